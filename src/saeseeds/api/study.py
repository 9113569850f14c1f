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
import os
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
from saeseeds.signflip import VERDICT_WORDS
from saeseeds.study.aggregate import only_in_base_fractions, similarity_by_frequency, study_row
from saeseeds.study.grid import GridPoint, long_seed_config, pass_configs, reference_point
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
            sets.append(dataclasses.replace(s, paths=paths, run_dir=None, frequencies=()))  # the end's do not apply
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
    quick: bool = False,
) -> StudyResult:
    """Train, compare and aggregate the study declared by `config` (a TOML path, or a parsed pair) into `out`;
    `quick` shrinks a TOML config to the smallest study that runs every stage (`quick_configs`)."""

    started = time.perf_counter()
    load_at_start = _load_average()
    out = Path(out)
    rule = rule or SharingRule()
    if isinstance(config, tuple):
        study, base = config
        config_text = None
    else:
        study, base = load_study_config(config, list(overrides or []), quick=quick)
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

    long_pass = None
    if study.design == "recipes" and study.long_seed:
        long_pass = _train_long_seed(study, passes, out, build_source, resume, say)

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
                save_comparison(found, where, overwrite=where.exists(), figures=step == total and not quick)
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
    if study.design == "recipes":
        record["recipes"] = write_recipes(
            study, passes, runs, final, metrics, total, out, rule=rule, long_pass=long_pass, resume=resume,
            say=say, title=Path(config).name if not isinstance(config, tuple) else "study", device=device,
            load_at_start=load_at_start)
    from saeseeds.study.figures import study_figures

    title = Path(config).name if not isinstance(config, tuple) else "study"
    record["figures"] = [str(p.relative_to(out)) for p in study_figures(record, out / "figures", title)]
    if study.design == "recipes":
        record["figures"].append("figures/recipes_pareto.png")
    record["seconds"] = time.perf_counter() - started
    if resume and (out / "study.json").is_file():  # the invocations before this one (training time included)
        try:
            before = json.loads((out / "study.json").read_text())
            record["seconds_before"] = float(before.get("seconds", 0)) + float(before.get("seconds_before", 0))
        except (OSError, ValueError, TypeError):
            pass
    write_record(out / "study.json", FORMAT, record)
    return StudyResult(out, rows, results, record)


def _train_long_seed(study: StudyConfig, passes: list[tuple[RunConfig, list[GridPoint]]], out: Path,
                     build: Callable[[RunConfig], SourcePair], resume: bool,
                     say: Callable[[str], None]) -> dict[str, Any]:
    """The reference recipe's one seed trained for the compute of all S seeds, in its own run (runs/long)."""
    cfg, point = _reference_pass(study, passes)
    long_cfg = long_seed_config(cfg, point)
    run_dir = out / "runs" / "long"
    say(f"  training the long single seed of {point.name}: {long_cfg.train.num_tokens:,} tokens "
        f"(= {len(cfg.train.seeds)} seeds x {cfg.train.num_tokens:,})")
    t0 = time.perf_counter()
    _train_pass(long_cfg, run_dir, build, resume, say)
    return {"run": run_dir, "name": long_cfg.saes[0].name, "seed": long_cfg.train.seeds[0],
            "tokens": long_cfg.train.num_tokens, "seconds": time.perf_counter() - t0}


def _reference_pass(study: StudyConfig, passes: list[tuple[RunConfig, list[GridPoint]]]
                    ) -> tuple[RunConfig, GridPoint]:
    """The pass config that trains the reference recipe, and its point."""
    ref = reference_point(study, [p for _, chunk in passes for p in chunk])
    cfg = next(c for c, chunk in passes if any(p.name == ref.name for p in chunk))
    return cfg, ref


def write_recipes(study: StudyConfig, passes: list[tuple[RunConfig, list[GridPoint]]], runs: list[Run],
                  final: list[CrossSeedResult], metrics: dict[tuple[str, int], dict[str, Any]], total: int,
                  out: Path, *, rule: SharingRule, long_pass: dict[str, Any] | None, resume: bool,
                  say: Callable[[str], None], title: str, device: str | None = None,
                  load_at_start: list[float] | None = None) -> str:
    """The recipe comparison (docs/study.md): functional correspondence, timing, pooling, the long seed, the
    verdicts; written to recipes.json, recipes.csv and figures/recipes_pareto.png. Returns recipes.json's name."""
    import pandas as pd

    from saeseeds.analysis.functional_correspondence import summarise
    from saeseeds.study import recipes as rc
    from saeseeds.study.figures import recipes_pareto

    points = {p.name: p for _, chunk in passes for p in chunk}
    _, ref = _reference_pass(study, passes)
    run_of = {s.sae_name: run for run in runs for s in run.seed_sets()}
    rows, seeds, functional, recovery = [], {}, {}, {}
    for result in final:
        run = run_of[result.sae_name]
        records = [metrics.get((f"{result.hookpoint}/{result.sae_name}/{name}", total)) for name in result.names]
        per = rc.per_seed(result, records)
        seeds[result.sae_name] = {"seeds": [_seed_id(s) for s in result.names], **per}
        say(f"  {result.sae_name}: functional correspondence of {result.num_seeds * (result.num_seeds - 1)} "
            "ordered seed pairs")
        held_out = run.held_out_rows(result.hookpoint)  # read once: functional correspondence and timing
        pairs = _functional_pairs(result, held_out)
        functional[result.sae_name] = {"pairs": pairs, "summary": summarise(pairs)}
        rows.append(rc.recipe_row(
            result.sae_name, points[result.sae_name].as_dict(), result, per,
            tokens=int(run.manifest.get("tokens", 0)),
            seconds=_seconds_per_sae(run, result, points[result.sae_name], held_out, device),
            lm_loss=_lm_loss(run, result), functional=functional[result.sae_name]["summary"]))
        truth = _ground_truth(run)
        if truth is not None:  # synthetic data: true features recovered, by kind
            counts = _recovery(truth, result)
            recovery[result.sae_name] = counts
            rows[-1].update(rc.recovery_columns(counts))
    verdicts = rc.judge_recipes(seeds, ref.name, kind=rule.stability, fvu_margin=study.fvu_margin,
                                alpha=study.alpha)
    extras: dict[str, Any] = {}
    if long_pass is not None:
        row, extras["long_seed"] = _long_row(long_pass, ref, rows)
        rows.append(row)
    if study.pooling:
        ref_result = next(r for r in final if r.sae_name == ref.name)
        row, extras["pooling"] = _pool_row(out, ref, ref_result.paths, total, rule, resume, say)
        rows.append(row)
    rc.attach_verdicts(rows, verdicts, ref.name)
    figure = recipes_pareto(rows, ref.name, out / "figures", title, estimator=rule.stability)
    flat = rc.flat_rows(rows)
    atomic_write_text(out / "recipes.csv", pd.DataFrame(flat, columns=list(rc.COLUMNS)).to_csv(index=False))
    write_record(out / "recipes.json", RECIPES_FORMAT, stamp(RECIPES_FORMAT, {
        "reference": ref.name, "claim": rc.CLAIM, "estimator": rule.stability, "rule": rule.to_dict(),
        "fvu_margin": study.fvu_margin, "alpha": study.alpha, "k": ref.k,
        "hookpoint": final[0].hookpoint if final else None, "seeds": passes[0][0].train.seeds,
        "rows": flat, "per_seed": seeds, "verdicts": verdicts, "functional": functional, **extras,
        **({"recovery": recovery} if recovery else {}),
        "figure": str(figure.relative_to(out)),
        "machine": _machine(load_at_start),
        "cost_note": "train_seconds_per_sae: one SAE of the recipe alone, timed over a few steps after training "
                     "and scaled to the run's steps (the recipes train in lockstep, so the run's wall time is "
                     "shared); initialisation from data is not included",
    }))
    return "recipes.json"


RECIPES_FORMAT = "saeseeds.recipes/1"


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _machine(load_at_start: list[float] | None) -> dict[str, Any]:
    """What the cost columns depend on: CPU model, cores, torch threads, the load average at start and end."""
    import torch

    from saeseeds.align.screen_choice import this_machine

    return {"cpu": this_machine().cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_start": load_at_start, "load_average_end": _load_average()}
TIMED_STEPS = 8
"""Optimiser steps timed per recipe (after 2 untimed ones) for its per-SAE training cost."""


def _seed_id(name: str) -> int | str:
    """The seed number of a seed name (`seed3` -> 3), else the name."""
    digits = name.removeprefix("seed")
    return int(digits) if digits.isdigit() else name


def _functional_pairs(result: CrossSeedResult, rows: list[Any]) -> list[dict[str, Any]]:
    """Functional correspondence of every ordered seed pair, on the run's held-out rows."""
    from saeseeds.analysis.functional_correspondence import functional_correspondence
    from saeseeds.sae import load_sae

    saes = [load_sae(p) for p in result.paths]
    out = []
    for (i, j), al in sorted(result.alignments.items()):
        rec = functional_correspondence(saes[i], saes[j], al.dec_partner, rows)
        out.append({"a": result.names[i], "b": result.names[j], **rec})
    return out


def _ground_truth(run: Run) -> Any:
    """The true features of a synthetic run (stored by `saeseeds synthetic`, else rebuilt from the run's
    [synthetic] config, which fixes them); None for other sources."""
    truth = run.ground_truth()
    if truth is None and run.config.data.source == "synthetic":
        from saeseeds.data.synthetic import SyntheticModel

        truth = SyntheticModel(run.config.synthetic).truth
    return truth


def _recovery(truth: Any, result: CrossSeedResult) -> list[dict[str, Any]]:
    """Per seed, the true features its decoder recovers (Hungarian cosine > 0.9), in total and by kind."""
    from saeseeds.pooling.evaluate import decoder_rows, feature_kinds, recovery_counts
    from saeseeds.sae import load_sae

    kinds = feature_kinds(truth)
    return [{"seed": name, "of": kinds, **recovery_counts(truth, decoder_rows(load_sae(p)))}
            for name, p in zip(result.names, result.paths)]


def _seconds_per_sae(run: Run, result: CrossSeedResult, point: GridPoint, held_out: list[Any],
                     device: str | None) -> float | None:
    """Training wall seconds of one SAE of the recipe: `TIMED_STEPS` steps alone on held-out rows, scaled to
    the run's steps (None when there are too few rows for a batch or for a data-dependent initialisation)."""
    import torch

    from saeseeds.sae.registry import get_architecture
    from saeseeds.training.member import Member

    cfg = run.config
    rows = torch.cat(held_out).float() * run.input_scale(result.hookpoint)
    batch = int(cfg.train.batch_size)
    if rows.shape[0] < batch:
        return None
    steps = int(run.manifest.get("total_steps", 0))
    n = point.sae.resolved_num_latents(int(rows.shape[1]))
    count = get_architecture(point.sae.architecture).shared_points(point.sae, n)  # rasae's candidate points
    from_data = point.sae.init_decoder != "random"
    if rows.shape[0] < max(count, n if from_data else 0):
        return None
    # the step's cost does not depend on the initial values: held-out rows stand in for the init sample
    member = Member.create(result.hookpoint, point.sae, 0, int(rows.shape[1]), cfg.train, max(steps, 1),
                           torch.device(device or "cpu"), sample=rows - rows.mean(0) if from_data else None,
                           points=rows[:count] if count else None)
    x = rows[:batch].to(member.sae.device)
    for step in range(2):
        member.step(x, step)
    t0 = time.perf_counter()
    for step in range(2, 2 + TIMED_STEPS):
        member.step(x, step)
    return (time.perf_counter() - t0) / TIMED_STEPS * steps


def _lm_loss(run: Run, result: CrossSeedResult) -> list[float] | None:
    """LM loss recovered of the recipe's seeds from the run's lm_loss.json (None: not measured, e.g. an encoder)."""
    from saeseeds.analysis.lm_loss import read_lm_loss

    record = read_lm_loss(run.path)
    if record is None:
        return None
    return [float(r["ce_loss_recovered"]) for r in record["rows"]
            if r.get("sae") == result.sae_name and r.get("hookpoint") == result.hookpoint]


def _long_row(long_pass: dict[str, Any], ref: GridPoint, rows: list[dict[str, Any]]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The long single seed's row (held-out FVU, L0, dead fraction; no cross-seed numbers: one seed) and record."""
    run = Run.open(long_pass["run"])
    steps = int(run.manifest.get("total_steps", 0))
    evals = [r for r in _metrics([run]).values() if int(r.get("step", -1)) == steps]
    rec = evals[0] if evals else {}
    ref_row = next((r for r in rows if r["recipe"] == ref.name), {})
    per_step = (ref_row.get("train_seconds_per_sae") or 0) / max(int(ref_row.get("tokens_per_sae") or 0), 1)
    row = {"recipe": long_pass["name"], "kind": "long_seed", "architecture": ref.architecture, "k": ref.k,
           "target_l0": ref.target_l0, "num_latents": ref_row.get("num_latents"), "n_seeds": 1,
           **{f"{m}_mean": rec.get(m) for m in ("fvu", "l0", "dead_fraction")},
           "tokens_per_sae": int(long_pass["tokens"]),
           "train_seconds_per_sae": per_step * int(long_pass["tokens"]) if per_step else None,
           "verdict": "undetermined"}
    info = {"run": relative_path(long_pass["run"], long_pass["run"].parent.parent), "seed": long_pass["seed"],
            "tokens": long_pass["tokens"], "pass_seconds": long_pass["seconds"], "heldout": rec,
            "verdict": {"holds": None, "reason": "one seed has no cross-seed stability to compare; its FVU is "
                                                 "the compute-matched alternative to the reference's seeds"}}
    return row, info


def _pool_row(out: Path, ref: GridPoint, ref_paths: Sequence[str], total: int, rule: SharingRule, resume: bool,
              say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pool the reference recipe's seeds (`saeseeds pool` on the final comparison with default options, except
    that the contribution ranking reads at most what the seeds trained on; a resumed study keeps a finished pool)
    and its row: held-out FVU and, with ≥ 4 seeds, the split halves' sharing and the pool's own verdict."""
    from saeseeds.api.pooling import pool
    from saeseeds.pooling.options import PoolOptions

    where = out / "pool"
    if not (resume and (where / "pool.json").is_file()):
        say(f"  pooling the seeds of {ref.name} into {where}")
        run = Run.containing(next(iter(ref_paths)))
        tokens = int(run.manifest.get("tokens", 0)) * len(ref_paths) if run is not None else PoolOptions.select_tokens
        options = PoolOptions(rule=rule, select_tokens=max(1, min(PoolOptions.select_tokens, tokens)))
        pool(out / "compare" / f"step{total:08d}", out=where, options=options, config=ref.name,
             overwrite=where.exists(), say=lambda _msg: None)
    record = json.loads((where / "pool.json").read_text())
    summary = record.get("summary") or {}
    held = (record.get("heldout") or {}).get("pooled_all") or {}
    sf = (summary.get("shared_fraction") or {}).get("pooled_pairs") or {}
    verdict = (summary.get("verdicts") or {}).get("vs_single_seeds") or {}
    row = {"recipe": f"{ref.name}-pooled", "kind": "pooled", "architecture": ref.architecture, "k": ref.k,
           "target_l0": ref.target_l0, "num_latents": summary.get("pooled_latents"),
           "n_seeds": len(summary.get("seeds") or []),
           "shared_fraction_mean": sf.get("mean"), "shared_fraction_sd": sf.get("std"),
           "fvu_mean": held.get("fvu"), "l0_mean": held.get("l0"), "dead_fraction_mean": held.get("dead_fraction"),
           "tokens_per_sae": (record.get("compute") or {}).get("pooled_all"),
           "verdict": VERDICT_WORDS.get(verdict.get("holds"), "undetermined"),
           "p_value": verdict.get("p_value")}
    return row, {"dir": "pool", "summary": summary}


def study(
    config: str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    rule: SharingRule | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    quick: bool = False,
) -> StudyResult:
    """Run the study of the TOML `config` (its `[study]` axes over the base config) into `out`; `quick`: the
    smallest study that runs every stage (docs/cli.md, "study --quick").

    `overrides` are `--section.field value` strings (`--study.k 8,16`, `--train.num_tokens 50000`); `resume`
    continues an interrupted study (finished passes and stored comparisons are kept, never redone).
    """
    return run_study(config, out, overrides=list(overrides), rule=rule, resume=resume, overwrite=overwrite,
                     device=device, quick=quick)
