"""Wrap seeds of an SAE trained elsewhere (any format `load_any` reads, hub names too) into a saeseeds run
directory, so `saeseeds analyze` can study them: the SAEs become `<hookpoint>/<name>/seed<i>/` checkpoints and
run.json names the model, hookpoint and corpus whose activations they read. No held-out set is stored, so analyze
runs the language model to build one (`saeseeds.analysis.eval_data.build_eval_data`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from saeseeds import __version__
from saeseeds.atomic import atomic_dir, atomic_write_json
from saeseeds.config import DataConfig, LmConfig, RunConfig, TrainConfig, to_dict
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.sae.checkpoint import save_sae

IMPORTED = "imported"
"""run.json `status` of a wrapped run (a trained one says `complete`)."""


def export_run(sources: Sequence[str | Path], out: str | Path, *, lm: LmConfig, name: str = "",
               overwrite: bool = False) -> Path:
    """Write the SAEs of `sources` (the seeds of one configuration) as a run directory `out`; returns run.json.

    `lm` names the model, the one hookpoint the SAEs read and the corpus (`lm.model` "" is the embedded default).
    The SAEs must share architecture, width and d_in. Every SAE is taken as it loads: raw activations in.
    """
    from saeseeds.sae.formats import load_any
    from saeseeds.training.run_dir import MANIFEST, checkpoint_dir, is_run_dir, read_manifest

    out = Path(out)
    if len(lm.hookpoints) != 1:
        raise ConfigError(f"--hookpoint: give exactly one hookpoint (the module the SAEs read), got {lm.hookpoints}")
    if len(sources) < 2:
        raise ConfigError("--format run: give at least two checkpoints (the seeds to analyse)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        own = is_run_dir(out) and read_manifest(out).get("status") == IMPORTED
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
    hookpoint = lm.hookpoints[0]
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
                            "source": str(Path(source).resolve()) if Path(source).exists() else str(source)})
        atomic_write_json(tmp / MANIFEST, {
            "saeseeds_version": __version__, "created": now, "updated": now, "status": IMPORTED,
            "about": "SAEs trained elsewhere, wrapped by `saeseeds export --format run` for analyze; not trained "
                     "here (no data fingerprint, no stored held-out set)",
            "seeds": list(cfg.train.seeds), "config": to_dict(cfg),
            "data": {"source": "lm", "model": lm.model, "hook_input": lm.hook_input,
                     "exclude_special_tokens": lm.exclude_special_tokens},
            "hookpoints": {hookpoint: {"d_in": first.d_in, "input_scale": 1.0}},
            "saes": entries,
        })
    return out / MANIFEST
