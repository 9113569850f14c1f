"""The synthetic experiment (the Python face of `saeseeds synthetic`): train seeds on known ground truth, score what
each configuration recovered, and write the report folder (docs/synthetic.md)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeseeds.align.sharing import SharingRule
from saeseeds.atomic import atomic_write
from saeseeds.config import RunConfig, apply_overrides, load_config
from saeseeds.errors import ConfigError
from saeseeds.outputs import check_creatable
from saeseeds.records import relative_path, write_record

if TYPE_CHECKING:
    from saeseeds.analysis.synthetic_experiment import ConfigRecovery
    from saeseeds.data.synthetic import SyntheticModel

REPORT_DIR = "synthetic_report"
RECOVERY_SCHEMA = "saeseeds.synthetic/1"
"""`schema` of synthetic_report/recovery.json (docs/formats.md)."""


@dataclass
class SyntheticResult:
    """What `synthetic` measured and where it wrote it."""

    run_dir: Path
    report_dir: Path
    configs: list[ConfigRecovery]
    """Every configuration with at least two seeds, scored against the ground truth."""
    baseline_deg: float | None
    """Median largest principal angle between two random group-rank subspaces (None for the composed model)."""


def default_config_path() -> Path:
    """The packaged default config of the experiment."""
    return Path(str(resources.files("saeseeds.defaults") / "synthetic.toml"))


def synthetic_config(config: RunConfig | str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config of the experiment (None: the packaged synthetic.toml); ConfigError unless its data is synthetic."""
    if isinstance(config, RunConfig):
        cfg = apply_overrides(config, list(overrides)) if overrides else config
    else:
        cfg = load_config(config or default_config_path(), list(overrides))
    if cfg.data.source != "synthetic":
        raise ConfigError(f"data.source is {cfg.data.source!r}; the synthetic experiment needs 'synthetic'")
    return cfg


def synthetic(
    config: RunConfig | str | Path | None,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    rule: SharingRule | None = None,
    report_only: bool = False,
) -> SyntheticResult:
    """Train every [[sae]] of `config` for every seed into `out` (`report_only`: use the finished run there, which
    must have been trained on this config's ground truth), then score each configuration and write
    `out/synthetic_report/`: recovery.json, the cross-seed results, the per-seed recovery tensors and figures."""
    cfg = synthetic_config(config, overrides)
    out, rule = Path(out), rule or SharingRule()
    check_creatable(out)
    # the heavy imports after the config and --out checks: a bad one fails at once
    from saeseeds.analysis.synthetic_experiment import (
        check_ground_truth,
        random_baseline_deg,
        recover_run,
    )
    from saeseeds.data.synthetic import SyntheticModel, build_synthetic_source, save_ground_truth
    from saeseeds.training import train_run
    from saeseeds.training.run_dir import Run

    model = SyntheticModel(cfg.synthetic)
    started = time.perf_counter()
    if not report_only:
        train_run(cfg, build_synthetic_source(cfg), out)
        save_ground_truth(model.truth, out)
    run = Run.open(out)  # opened once, after training: what the measurement reads
    if report_only:
        check_ground_truth(run, model.truth)
    train_seconds = time.perf_counter() - started
    report_dir = out / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    baseline = None if cfg.synthetic.kind == "composed" else random_baseline_deg(cfg.synthetic.d_in,
                                                                                 cfg.synthetic.group_rank)
    configs = []
    for found in recover_run(run, model, rule):
        found.cross.save(report_dir / "cross_seed" / found.sae_name)
        _write_figures(found, model, report_dir, baseline)
        _write_tensors(found, report_dir / f"{found.sae_name}_recovery.pt")
        configs.append(found)
    write_record(report_dir / "recovery.json", RECOVERY_SCHEMA, {
        "run_dir": relative_path(out, report_dir),
        "config": dataclasses.asdict(cfg),
        "ground_truth_sha256": model.truth.fingerprint(),
        "train_seconds": train_seconds,
        "random_subspace_max_angle_deg_median": baseline,
        "saes": {found.key: found.summary for found in configs},
    })
    return SyntheticResult(out, report_dir, configs, baseline)


def _write_figures(found: ConfigRecovery, model: SyntheticModel, report_dir: Path, baseline: float | None) -> None:
    """The configuration's figures, `<sae_name>_<figure>.png` (and the numbers beside each)."""
    from saeseeds.report.synthetic_plots import (
        plot_composed,
        plot_feature_recovery,
        plot_latent_stability,
        plot_sharing_vs_frequency,
        plot_subspace_recovery,
    )

    truth, result, key, name = model.truth, found.result, found.key, found.sae_name
    if found.classes is not None:
        plot_composed(found.summary["composed"], found.classes, report_dir / f"{name}_composed.png", key)
    plot_feature_recovery(truth, result, report_dir / f"{name}_feature_recovery.png", key)
    if truth.num_groups:
        plot_subspace_recovery(truth, result, report_dir / f"{name}_subspace_recovery.png", baseline, key)
    plot_sharing_vs_frequency(truth, result, report_dir / f"{name}_sharing_vs_frequency.png", key)
    plot_latent_stability(result, report_dir / f"{name}_latent_stability.png", key)


def _write_tensors(found: ConfigRecovery, path: Path) -> None:
    """The per-seed recovery tensors (`RecoveryResult`'s fields, the rule as a dict), written atomically."""
    import torch

    result = found.result
    tensors: dict[str, Any] = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "rule"}
    atomic_write(path, lambda tmp: torch.save(tensors | {"rule": result.rule.to_dict()}, tmp))
