"""Run a study (the Python face of `saeseeds study`, orchestration above the stages it composes): train each pass (resumable), compare the seeds at every milestone once (stored in the compare
format), then aggregate the stored results into study.json, table.csv, table.parquet and figures/.

Layout of `<out>/` (format `saeseeds.study/1`, docs/formats.md):

    study.toml                the config as given;  study.json   axes, grid, passes, milestones, rows, curves
    runs/pass<i>/             one ordinary run directory per pass (milestones/ inside)
    compare/step<NNNNNNNN>/   one compare output per milestone (the last one is the end of training)
    table.csv, table.parquet  one row per seed set x milestone;  figures/  PNGs with their numbers as JSON
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from saeseeds.align.cross_seed import CrossSeedResult, SeedSet
from saeseeds.align.sharing import SharingRule
from saeseeds.api.comparison import compare_all, load_comparison, save_comparison
from saeseeds.api.training import lm_loss_hook
from saeseeds.atomic import atomic_write_text
from saeseeds.config import RunConfig, to_dict
from saeseeds.config.study import StudyConfig, load_study_config
from saeseeds.data.types import SourcePair
from saeseeds.distributed import current_world
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.outputs import check_output_dir, mark_output, output_kind
from saeseeds.records import relative_path, stamp, write_record
from saeseeds.run_layout import CHECKPOINT_CONFIG, MANIFEST, POINTER, STATE_DIR
from saeseeds.study.aggregate import only_in_base_fractions, similarity_by_frequency, study_row
from saeseeds.study.grid import GridPoint, pass_configs
from saeseeds.study.table import write_table
from saeseeds.training.run_dir import Run, checkpoint_dir

FORMAT = "saeseeds.study/1"
KIND = "study"
CONFIG_COPY = "study.toml"
log = logging.getLogger(__name__)


class StudyResult(NamedTuple):
    """Where the study is and what it measured."""

    out: Path
    rows: list[dict[str, Any]]
    results: dict[int, list[CrossSeedResult]]
    """Per milestone step, the stored cross-seed results."""
    record: dict[str, Any]


def _say(msg: str) -> None:
    """Status lines go to the `saeseeds` logger (INFO; the CLI shows them on stderr, saeseeds.log)."""
    log.info(msg)


def _silent(msg: str) -> None:
    """What ranks other than 0 say: nothing (rank 0 speaks for the study)."""


def prepare_study_dir(out: Path, *, resume: bool, overwrite: bool, remove: bool = True) -> None:
    """Refuse an --out that is not empty and not this study's (resume) or an earlier study (overwrite).

    `remove=False` only checks (the ranks other than 0 of a distributed study)."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the study, or replace it")
    if resume:
        if output_kind(out) != KIND:
            raise CheckpointError(f"--resume: {out} holds no study (no saeseeds study marker)")
        return
    check_output_dir(out, KIND, overwrite=overwrite)
    if out.exists() and overwrite and remove:
        shutil.rmtree(out)


def check_study_resume(out: Path, study: StudyConfig, configs: Sequence[RunConfig], run_dirs: Sequence[Path]) -> None:
    """Refuse `--resume` when the study's axes (study.json, once written) or the config of a complete pass
    (its run.json) differ from the request, naming every changed field with `train --resume`'s comparison
    (`check_resume_config`): a kept pass or comparison would otherwise stand for a config it was not trained
    with. An interrupted pass is checked by the trainer itself when it resumes."""
    from saeseeds.training.state import check_resume_config

    requested = to_dict(study)
    recorded = _recorded(out / "study.json", "study", StudyConfig)
    if recorded is not None:
        check_resume_config({"study": recorded}, {"study": requested})
    for cfg, run_dir in zip(configs, run_dirs):
        if Run.is_run(run_dir) and Run.open(run_dir).complete:
            trained = _recorded(run_dir / MANIFEST, "config", RunConfig)
            if trained is not None:
                check_resume_config(trained, to_dict(cfg))


def _recorded(path: Path, key: str, cls: type) -> dict[str, Any] | None:
    """The config section `key` of a JSON record, with every default filled in (so equal configs compare equal);
    None when the file or the section is absent."""
    from saeseeds.config import from_dict

    try:
        section = json.loads(path.read_text()).get(key) if path.is_file() else None
    except (OSError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: cannot read the study's record ({err})") from err
    return to_dict(from_dict(cls, section, f"{path}:{key}")) if isinstance(section, dict) else None


def _train_pass(cfg: RunConfig, run_dir: Path, build: Callable[[RunConfig], SourcePair], resume: bool,
                say: Callable[[str], None]) -> None:
    from saeseeds.training import train_run

    if Run.is_run(run_dir) and Run.open(run_dir).complete:
        say(f"  {run_dir.name}: complete, kept")
        return
    again = resume and (run_dir / STATE_DIR / POINTER).is_file()
    train_run(cfg, build(cfg), run_dir, resume=again, overwrite=not again and run_dir.exists(),
              on_complete=lm_loss_hook(cfg))


def _seed_sets(runs: list[Run], step: int, total: int) -> list[SeedSet]:
    """Every seed set of the passes at a milestone step (the run's own checkpoints at the end of training)."""
    sets = []
    for run in runs:
        for s in run.seed_sets():
            if step == total:
                sets.append(s)
                continue
            where = run.milestone(step)
            paths = tuple(checkpoint_dir(where, s.hookpoint, s.sae_name, int(seed)) for seed in s.seeds)
            missing = [p for p in paths if not (p / CHECKPOINT_CONFIG).is_file()]
            if missing:
                raise CheckpointError(f"{missing[0]}: milestone checkpoint is missing (run.json lists step {step})")
            sets.append(dataclasses.replace(s, paths=paths, run_dir=None))
    return sets


def _metrics(runs: list[Run]) -> dict[tuple[str, int], dict[str, Any]]:
    """Every evaluation record of the passes, by (member key, step)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        for rec in run.metrics():
            try:
                if rec.get("kind", "eval") == "eval":  # per-step training lines (kind "train") are not evaluations
                    out[(str(rec["key"]), int(rec["step"]))] = rec
            except (ValueError, KeyError, TypeError):
                continue
    return out


def run_study(
    config: str | Path | tuple[StudyConfig, RunConfig],
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    rule: SharingRule | None = None,
    resume: bool = False,
    overwrite: bool = False,
    build_source: Callable[[RunConfig], SourcePair] | None = None,
    say: Callable[[str], None] = _say,
    device: str | None = None,
) -> StudyResult:
    """Train, compare and aggregate the study declared by `config` (a TOML path, or a parsed pair) into `out`."""

    started = time.perf_counter()
    out = Path(out)
    rule = rule or SharingRule()
    if isinstance(config, tuple):
        study, base = config
        config_text = None
    else:
        study, base = load_study_config(config, list(overrides or []))
        config_text = Path(config).read_text(encoding="utf-8")
    passes = pass_configs(study, base)
    run_dirs = [out / "runs" / f"pass{i}" for i in range(len(passes))]
    world = current_world()  # under torchrun: every rank trains and aligns its share, rank 0 writes
    world.agreed(lambda: prepare_study_dir(out, resume=resume, overwrite=overwrite, remove=world.is_main))
    if resume:
        world.agreed(lambda: check_study_resume(out, study, [cfg for cfg, _ in passes], run_dirs))
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        mark_output(out, KIND)
        if config_text is not None and not (resume and (out / CONFIG_COPY).is_file()):
            atomic_write_text(out / CONFIG_COPY, config_text)
    else:
        say = _silent
    world.barrier()
    if build_source is None:
        from saeseeds.data.sources import build_source as default_build

        build_source = default_build
    points: dict[str, GridPoint] = {p.name: p for _, chunk in passes for p in chunk}
    n_saes = sum(len(c.saes) * len(c.train.seeds) for c, _ in passes)
    say(f"study: {len(points)} grid points x {len(passes[0][0].train.seeds)} seeds ({n_saes} SAEs per "
        f"hookpoint) in {len(passes)} pass(es); milestones {study.milestone_fractions()}")
    for i, ((cfg, _), run_dir) in enumerate(zip(passes, run_dirs)):
        say(f"  training pass {i + 1}/{len(passes)}: {', '.join(s.name for s in cfg.saes)}")
        t0 = time.perf_counter()
        _train_pass(cfg, run_dir, build_source, resume, say)
        log.debug("pass %d (%s) in %.1fs", i + 1, run_dir, time.perf_counter() - t0)

    runs = [Run.open(d) for d in run_dirs]
    total = int(runs[0].manifest["total_steps"])
    milestones = [m for m in runs[0].manifest.get("milestones", []) if m.get("done")]
    metrics = _metrics(runs)
    results: dict[int, list[CrossSeedResult]] = {}
    rows: list[dict[str, Any]] = []
    milestone_records = []
    for m in milestones:
        step = int(m["step"])
        where = out / "compare" / f"step{step:08d}"
        sets = _seed_sets(runs, step, total)
        stored = load_comparison(where) if (where / "summary.json").is_file() else []
        if stored and sorted(r.label for r in stored) == sorted(s.label for s in sets):
            found = [r.with_rule(rule) for r in stored]
            say(f"  milestone step {step}: stored comparison kept ({where})")
        else:
            say(f"  milestone step {step} ({m['fraction']:.0%} of training): aligning the seeds of every set")
            t0 = time.perf_counter()
            found = compare_all(sets, rule=rule, device=device, progress=base.train.progress and world.is_main)
            log.debug("milestone step %d: %d sets aligned in %.1fs", step, len(found), time.perf_counter() - t0)
            if world.is_main:
                save_comparison(found, where, overwrite=where.exists(), figures=step == total)
            world.barrier()
        results[step] = found
        milestone_records.append({**{k: v for k, v in m.items() if k != "path"},  # run.json's path is the run's
                                  "paths": [relative_path(d / str(m.get("path", "")), out) for d in run_dirs],
                                  "compare": relative_path(where, out)})
        for result in found:
            point = points[result.sae_name].as_dict() if result.sae_name in points else {}
            keys = [f"{result.hookpoint}/{result.sae_name}/{name}" for name in result.names]
            records = [metrics[(key, step)] for key in keys if (key, step) in metrics]
            rows.append(study_row(result, point, m, records))

    final = results[max(results)] if results else []
    record: dict[str, Any] = stamp(FORMAT, {
        "config": CONFIG_COPY if config_text is not None else None,
        "study": to_dict(study),
        "rule": rule.to_dict(),
        "grid": [p.as_dict() for p in points.values()],
        "hookpoints": sorted({r["hookpoint"] for r in rows}),
        "seeds": list(passes[0][0].train.seeds),
        "passes": [{"run": str(d.relative_to(out)), "saes": [s.name for s in c.saes]}
                   for (c, _), d in zip(passes, run_dirs)],
        "milestones": milestone_records,
        "table": {"csv": "table.csv", "parquet": "table.parquet", "rows": len(rows)},
        "only_in_base": {r.label: dict(zip(("mean", "sd"), only_in_base_fractions(r))) for r in final},
        "similarity_by_frequency": {r.label: similarity_by_frequency(r) for r in final},
        "rows": rows,
    })
    if not world.is_main:
        return StudyResult(out, rows, results, record)
    write_table(rows, out)
    from saeseeds.study.figures import study_figures

    title = Path(config).name if not isinstance(config, tuple) else "study"
    record["figures"] = [str(p.relative_to(out)) for p in study_figures(record, out / "figures", title)]
    record["seconds"] = time.perf_counter() - started
    if resume and (out / "study.json").is_file():  # the invocations before this one (training time included)
        try:
            before = json.loads((out / "study.json").read_text())
            record["seconds_before"] = float(before.get("seconds", 0)) + float(before.get("seconds_before", 0))
        except (OSError, ValueError, TypeError):
            pass
    write_record(out / "study.json", FORMAT, record)
    return StudyResult(out, rows, results, record)


def study(
    config: str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    rule: SharingRule | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
) -> StudyResult:
    """Run the study of the TOML `config` (its `[study]` axes over the base config) into `out`.

    `overrides` are `--section.field value` strings (`--study.k 8,16`, `--train.num_tokens 50000`); `resume`
    continues an interrupted study (finished passes and stored comparisons are kept, never redone).
    """
    return run_study(config, out, overrides=list(overrides), rule=rule, resume=resume, overwrite=overwrite,
                     device=device)
