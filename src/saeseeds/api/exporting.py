"""Export orchestration: find every SAE of a source (a checkpoint, a run, a folder, a hub name) and write it in
another library's format, or wrap foreign seeds into a run directory that `analyze` reads.

It lives in the API, not in `sae/`, because it reads run directories (`training`) and discovers seed sets
(`api.discovery`); `sae/export.py` keeps the format writers, which know only an SAE.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from saeseeds.atomic import atomic_dir
from saeseeds.config import DataConfig, LmConfig, RunConfig, TrainConfig, to_dict
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.names import RUN_TOP_LEVEL, check_name, check_relative
from saeseeds.outputs import check_output_dir, mark_output, recover_out
from saeseeds.records import relative_path, write_record
from saeseeds.sae.checkpoint import save_sae
from saeseeds.sae.export import (
    EXPORT_FORMATS,
    KIND,
    MANIFEST,
    SCHEMA,
    saelens_architecture,
    source_info,
    write_saelens,
)

IMPORTED = "imported"
"""run.json `status` of a wrapped run (a trained one says `complete`)."""


def source_text(source: str | Path, base: Path) -> str:
    """Where an SAE came from, as a record in `base` stores it: a local path relative to `base` (`tmp` lies beside
    the output), a hub name as given."""
    return relative_path(source, base) if Path(source).exists() else str(source)


def export_run(sources: Sequence[str | Path], out: str | Path, *, lm: LmConfig, name: str = "",
               overwrite: bool = False) -> Path:
    """Write the SAEs of `sources` (the seeds of one configuration) as a run directory `out`; returns run.json.

    `lm` names the model, the one hookpoint the SAEs read and the corpus (`lm.model` "" is the embedded default).
    The SAEs must share architecture, width and d_in. Every SAE is taken as it loads: raw activations in.
    """
    from saeseeds.run_layout import MANIFEST as RUN_MANIFEST
    from saeseeds.run_layout import RUN_SCHEMA
    from saeseeds.sae.formats import load_any
    from saeseeds.training.run_dir import Run, checkpoint_dir

    out = Path(out)
    if len(lm.hookpoints) != 1:
        raise ConfigError(f"--hookpoint: give exactly one hookpoint (the module the SAEs read), got {lm.hookpoints}")
    if len(sources) < 2:
        raise ConfigError("--format run: give at least two checkpoints (the seeds to analyse)")
    check_name(lm.hookpoints[0], "--hookpoint", ConfigError, RUN_TOP_LEVEL, "it names the run's folder of checkpoints")
    if name:
        check_name(name, "--name", ConfigError)
    recover_out(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        own = Run.is_run(out) and Run.open(out).manifest.get("status") == IMPORTED
        if not (own and overwrite):
            raise ConfigError(f"--out {out}: exists and is not empty" + ("; pass --overwrite to replace it"
                                                                          if own else "; choose a new directory"))
    saes = [load_any(s) for s in sources]
    first = saes[0]
    for source, sae in zip(sources, saes, strict=True):
        if (sae.architecture, sae.num_latents, sae.d_in) != (first.architecture, first.num_latents, first.d_in):
            raise CheckpointError(
                f"{source}: {sae.architecture} with {sae.num_latents} latents on d_in {sae.d_in}, but {sources[0]} "
                f"is {first.architecture} with {first.num_latents} on d_in {first.d_in}; seeds must match"
            )
    hookpoint = checked_hookpoint(lm, first.d_in)
    lm = dataclasses.replace(lm, hookpoints=[hookpoint])
    sae_cfg = dataclasses.replace(first.cfg, name=name or f"{first.architecture}-{first.num_latents}")
    cfg = RunConfig(data=DataConfig(source="lm"), lm=lm, train=TrainConfig(seeds=list(range(len(saes)))),
                    saes=[sae_cfg])
    cfg.validate()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = []
    with atomic_dir(out) as tmp:
        for seed, (source, sae) in enumerate(zip(sources, saes, strict=True)):
            save_sae(sae, checkpoint_dir(tmp, hookpoint, sae_cfg.name, seed), hookpoint=hookpoint, model=lm.model,
                     seed=seed)
            entries.append({"hookpoint": hookpoint, "name": sae_cfg.name, "seed": seed,
                            "architecture": sae.architecture, "num_latents": sae.num_latents,
                            "path": checkpoint_dir(Path("."), hookpoint, sae_cfg.name, seed).as_posix(),
                            "source": source_text(source, tmp)})
        write_record(tmp / RUN_MANIFEST, RUN_SCHEMA, {
            "created": now, "updated": now, "status": IMPORTED,
            "about": "SAEs trained elsewhere, wrapped by `saeseeds export --format run` for analyze; not trained "
                     "here (no data fingerprint, no stored held-out set)",
            "seeds": list(cfg.train.seeds), "config": to_dict(cfg),
            "data": {"source": "lm", "model": lm.model, "hook_input": lm.hook_input,
                     "exclude_special_tokens": lm.exclude_special_tokens},
            "hookpoints": {hookpoint: {"d_in": first.d_in, "input_scale": 1.0}},
            "saes": entries,
        })
    return out / RUN_MANIFEST


def checked_hookpoint(lm: LmConfig, d_in: int) -> str:
    """The model's module for `lm.hookpoints[0]` (sparsify and TransformerLens spellings resolved), checked now
    by one short forward to exist and to give activations of width `d_in`: a wrong hookpoint is refused here,
    not later in `analyze`."""
    import torch

    from saeseeds.data.hookpoints import resolve_hookpoints
    from saeseeds.data.lm_source import chunk_activations, load_language_model

    loaded = load_language_model(lm)
    hookpoint = resolve_hookpoints(loaded.model, lm.hookpoints)[0]
    probe = torch.tensor([[loaded.tokenizer.bos_token_id or loaded.tokenizer.cls_token_id or 0] * 4])
    width = int(chunk_activations(loaded.model, probe, [hookpoint], hook_input=lm.hook_input)[hookpoint].shape[-1])
    if width != d_in:
        raise CheckpointError(f"--hookpoint {hookpoint}: the model's activations there are {width} wide, but the "
                              f"SAEs read d_in {d_in}; name the module they were trained on")
    return hookpoint


def export_targets(source: str | Path) -> list[tuple[Path, Path]]:
    """(checkpoint, relative output folder) for every SAE of `source`: a checkpoint (hub names too, output at
    the top), a saeseeds run, or a folder of checkpoints (each under its path relative to `source`)."""
    from saeseeds.api.discovery import checkpoint_dirs
    from saeseeds.sae.formats import is_checkpoint_dir
    from saeseeds.sae.hub import resolve_checkpoint
    from saeseeds.training.run_dir import Run

    root = resolve_checkpoint(str(source))
    if is_checkpoint_dir(root):
        return [(root, Path("."))]
    if Run.is_run(root):
        return [(ref.path, _inside(ref.path, root)) for ref in Run.open(root).checkpoints()]
    found = checkpoint_dirs(root) if root.is_dir() else []
    if not found:
        raise CheckpointError(f"{root} holds no SAE checkpoint to export (nor a run directory with run.json)")
    return [(path, _inside(path, root)) for path in found]


def _inside(path: Path, root: Path) -> Path:
    """`path` relative to `root`, refused (CheckpointError) when it is not a plain path inside `root`: an export
    writes each SAE under that relative path, so one that leaves or hides would write outside `--out`."""
    rel = path.relative_to(root).as_posix()
    return Path(check_relative(rel, f"{root}: checkpoint path", CheckpointError))


def export(source: str | Path, out: str | Path, *, fmt: str = "saelens", overwrite: bool = False) -> Path:
    """Export every SAE of `source` (see `export_targets`) into `out` in format `fmt`; returns `out/export.json`.

    `out` is built aside and swapped in whole, marked as an export output, with `export.json` listing each SAE
    (schema `saeseeds.export/1`; source paths relative to it, hub names as given).
    """
    from saeseeds.sae.formats import load_any

    if fmt not in EXPORT_FORMATS:
        raise CheckpointError(f"--format {fmt!r} is not supported (supported: {', '.join(EXPORT_FORMATS)})")
    out = Path(out)
    check_output_dir(out, KIND, overwrite=overwrite)
    targets = export_targets(source)
    loaded = []
    for path, rel in targets:  # load and check everything before writing anything
        sae = load_any(path)
        saelens_architecture(sae, str(path))
        loaded.append((sae, path, rel))
    entries = []
    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        for sae, path, rel in loaded:
            write_saelens(sae, tmp / rel, source_info(path))
            entries.append({"path": rel.as_posix(), "source": source_text(path, tmp), "architecture": sae.architecture,
                            "saelens_architecture": saelens_architecture(sae, str(path)),
                            "d_in": sae.d_in, "d_sae": sae.num_latents})
        write_record(tmp / MANIFEST, SCHEMA, {"format": fmt, "source": source_text(source, tmp), "saes": entries})
    return out / MANIFEST
