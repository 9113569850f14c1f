"""`saeseeds synthetic [CONFIG.toml] --out DIR`: train seeds on known ground truth and report what they recover."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saeseeds.commands._flags import add_rule_flags, add_threads_flag, rule_from_args
from saeseeds.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from saeseeds.config import RunConfig

REPORT_DIR = "synthetic_report"
RECOVERY_FORMAT = "saeseeds.synthetic/1"
"""`schema` of synthetic_report/recovery.json (docs/formats.md)."""
GROUP_INPUT_ROWS = 200_000
"""Rows drawn to collect each group's pure inputs (about rows · firing probability per group)."""
LIVENESS_ROWS = 16_384
"""Composed model: evaluation rows on which a latent must fire at least once to count as alive."""
COMPOSED_THRESHOLD = 0.9
"""Composed model: decoder cosine at which a latent counts as aligned with a true or composed direction."""
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "synthetic",
        help="train seeds on synthetic ground truth and measure feature vs subspace recovery",
        description=(
            "Generate activations with known features (identifiable, basis-ambiguous and control groups, power-law "
            "frequencies; or the composed-features toy model with [synthetic] kind = 'composed'), train every "
            "[[sae]] for every seed on them, and report per-feature recovery, cross-seed sharing and per-group "
            "subspace recovery (composed: latents aligned with true, composed or neither directions) with "
            "figures. CONFIG defaults to the packaged "
            "synthetic.toml; any field can be overridden: --synthetic.group_rank 4, --train.seeds 0,1,2."
        ),
    )
    parser.add_argument("config", type=Path, nargs="?", default=None, help="TOML run config (default: packaged)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the run, ground truth and report")
    parser.add_argument(
        "--report-only", action="store_true", help="do not train: analyse the finished run already in --out"
    )
    add_threads_flag(parser, 1, "the synthetic SAEs are small, and extra threads only add synchronisation")
    add_rule_flags(parser)
    parser.set_defaults(func=run, accepts_overrides=True)


def default_config_path() -> Path:
    """The packaged default config of the experiment."""
    return Path(str(resources.files("saeseeds.defaults") / "synthetic.toml"))


def run(args: argparse.Namespace) -> int:
    from saeseeds.config import load_config
    from saeseeds.outputs import check_creatable

    # flags, config and --out first: a bad one fails before the heavy imports (which also keeps --help fast)
    rule = rule_from_args(args)
    cfg = load_config(args.config or default_config_path(), args.overrides)
    if cfg.data.source != "synthetic":
        raise ConfigError(f"data.source is {cfg.data.source!r}; the synthetic experiment needs 'synthetic'")
    check_creatable(args.out)

    import torch

    from saeseeds.align.cross_seed import align_seeds
    from saeseeds.align.pair import sae_weights
    from saeseeds.analysis.composed import classify_latents, summarize_composed
    from saeseeds.analysis.recovery import evaluate_recovery, summarize_recovery
    from saeseeds.data.synthetic import (
        SyntheticModel,
        build_synthetic_source,
        derive_seed,
        save_ground_truth,
    )
    from saeseeds.records import relative_path, write_record
    from saeseeds.sae import load_sae
    from saeseeds.training import list_checkpoints, read_manifest, train_run
    from saeseeds.training.run_dir import group_by_config

    out: Path = args.out
    model = SyntheticModel(cfg.synthetic)
    truth = model.truth
    started = time.perf_counter()
    if args.report_only:
        manifest = read_manifest(out)
        recorded = manifest.get("data", {}).get("ground_truth_sha256") or _find_key(manifest, "ground_truth_sha256")
        if recorded is None:
            raise CheckpointError(f"{out}: not a synthetic run (run.json records no ground truth)")
        if recorded != truth.fingerprint():
            raise CheckpointError(f"{out}: the run was trained on another ground truth than this config describes")
    else:
        pair = build_synthetic_source(cfg)
        train_run(cfg, pair, out)
        save_ground_truth(truth, out)
    train_seconds = time.perf_counter() - started

    composed = cfg.synthetic.kind == "composed"
    eval_generator = torch.Generator().manual_seed(derive_seed(cfg.synthetic.seed, "eval"))
    group_inputs = [] if composed else model.group_inputs(GROUP_INPUT_ROWS, eval_generator)
    liveness_rows = model.sample(LIVENESS_ROWS, eval_generator) if composed else None
    report_dir = out / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    baseline = None if composed else _random_baseline_deg(cfg)
    results: dict[str, Any] = {
        "run_dir": relative_path(out, out / REPORT_DIR),
        "config": dataclasses.asdict(cfg),
        "ground_truth_sha256": truth.fingerprint(),
        "train_seconds": train_seconds,
        "random_subspace_max_angle_deg_median": baseline,
        "saes": {},
    }
    from saeseeds.report.synthetic_plots import (
        plot_composed,
        plot_feature_recovery,
        plot_latent_stability,
        plot_sharing_vs_frequency,
        plot_subspace_recovery,
    )

    for (hookpoint, sae_name), refs in group_by_config(list_checkpoints(out)).items():
        saes = [load_sae(ref.path) for ref in refs]
        if len(saes) < 2:
            log.warning("%s/%s: only %d seed; cross-seed sharing needs at least 2", hookpoint, sae_name, len(saes))
            continue
        weights = [sae_weights(s) for s in saes]
        cross = align_seeds(weights, [f"seed{ref.seed}" for ref in refs], rule=rule, label=f"{hookpoint}/{sae_name}",
                           hookpoint=hookpoint, sae_name=sae_name, paths=[ref.path for ref in refs])
        cross.save(report_dir / "cross_seed" / sae_name)
        with torch.no_grad():
            result = evaluate_recovery(
                truth, weights, cross=cross, encoders=[s.encode_dense for s in saes], group_inputs=group_inputs,
            )
        summary = summarize_recovery(truth, result)
        summary["seeds"] = [ref.seed for ref in refs]
        key = f"{hookpoint}/{sae_name}"
        results["saes"][key] = summary
        stem = report_dir / sae_name
        classes = None
        if composed:
            with torch.no_grad():
                alive = [(s.encode_dense(liveness_rows) > 0).any(dim=0).cpu() for s in saes]
            classes = [classify_latents(truth, dec, threshold=COMPOSED_THRESHOLD, alive=a)
                       for (dec, _), a in zip(weights, alive)]
            summary["composed"] = summarize_composed(truth, classes, cross, threshold=COMPOSED_THRESHOLD)
            plot_composed(summary["composed"], classes, stem.with_name(f"{sae_name}_composed.png"), key)
        plot_feature_recovery(truth, result, stem.with_name(f"{sae_name}_feature_recovery.png"), key)
        if truth.num_groups:
            plot_subspace_recovery(truth, result, stem.with_name(f"{sae_name}_subspace_recovery.png"), baseline, key)
        plot_sharing_vs_frequency(truth, result, stem.with_name(f"{sae_name}_sharing_vs_frequency.png"), key)
        plot_latent_stability(result, stem.with_name(f"{sae_name}_latent_stability.png"), key)
        torch.save(
            {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "rule"}
            | {"rule": result.rule.to_dict()},
            report_dir / f"{sae_name}_recovery.pt",
        )
        _print_summary(key, summary, baseline)
        if composed:
            _print_composed(summary["composed"])
    write_record(report_dir / "recovery.json", RECOVERY_FORMAT, results)
    print(f"report: {report_dir}")
    return 0


def _find_key(data: Any, key: str) -> Any:
    """First value of `key` anywhere in nested dicts (run.json's layout of the source info is the trainer's)."""
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _random_baseline_deg(cfg: RunConfig) -> float:
    """Median largest principal angle between a random group-rank subspace and another, in d_in dimensions."""
    import torch

    from saeseeds.analysis.subspace_angles import random_subspace_angles

    syn = cfg.synthetic
    angles = random_subspace_angles(
        syn.d_in, syn.group_rank, syn.group_rank, num_samples=200, generator=torch.Generator().manual_seed(0)
    )
    return float(torch.rad2deg(angles.max(dim=1).values).median())


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _print_summary(key: str, summary: dict[str, Any], baseline: float | None) -> None:
    print(f"\n{key}  (seeds {summary['seeds']}; shared: τ = {summary['rule']['threshold']})")
    print(
        f"{'kind':<14} {'features':>8} {'match cos':>9} {'recovered':>9} {'shared':>7} {'stab.':>6} "
        f"{'lat/seed':>8} {'angle°':>7} {'worst°':>7} {'captured':>8}"
    )
    for kind, row in summary["by_kind"].items():
        print(
            f"{kind:<14} {row['num_features']:>8} {_fmt(row['mean_hungarian_cos']):>9} "
            f"{_fmt(row['recovered_fraction']):>9} {_fmt(row['shared_fraction']):>7} "
            f"{_fmt(row['latent_stability']):>6} {_fmt(row['num_latents_per_seed'], '.1f'):>8} "
            f"{_fmt(row.get('usage_max_angle_deg_mean'), '.1f'):>7} {_fmt(row.get('usage_max_angle_deg_worst'), '.1f'):>7} "
            f"{_fmt(row.get('usage_captured_mean'), '.3f'):>8}"
        )
    for kind, row in summary["by_kind"].items():
        if row.get("latent_axis_cos_median") is not None:
            print(
                f"  latents in {kind} groups: median max |coordinate| on the group's axes "
                f"{_fmt(row['latent_axis_cos_median'])} (1: a true axis; 1/√r: a cube vertex), axes mixed "
                f"{_fmt(row['latent_axes_mixed_median'], '.1f')}, cos with the nearest cube vertex "
                f"{_fmt(row['latent_vertex_cos_median'])}"
            )
    if baseline is not None:
        print(
            "(angle°/worst°: mean/worst over groups and seeds of the largest principal angle of the used subspace; "
            f"random: {baseline:.0f}°; lat/seed: latents per seed lying mostly in that kind)"
        )
    for b in summary.get("single_features_by_frequency", []):
        print(
            f"  single features p in [{b['min_firing_prob']:.4f}, {b['max_firing_prob']:.4f}]: "
            f"shared {_fmt(b['shared_fraction'])}, recovered {_fmt(b['recovered_fraction'])}"
        )


def _print_composed(comp: dict[str, Any]) -> None:
    print(
        f"composed model (m = {comp['num_x']} x, n = {comp['num_y']} y, amplitude correlation "
        f"{comp['amplitude_correlation']}; latents per seed with decoder cos >= {comp['threshold']}):"
    )
    stab = comp.get("latent_stability_by_class", {})
    for name, values in comp["latents_per_seed"].items():
        print(f"  {name:<9} per seed {values}  stability {_fmt(stab.get(name))}")
    print(
        f"  true features found per seed {comp['features_found_per_seed']} of {comp['num_x'] + comp['num_y']} "
        f"(cross-seed Jaccard {_fmt(comp['features_found_jaccard'])}); composed directions found "
        f"{comp['composed_found_per_seed']} of {comp['num_x'] * comp['num_y']} "
        f"(Jaccard {_fmt(comp['composed_found_jaccard'])})"
    )
    hist = comp["plane_angle_deg_histogram"]
    print(f"  in-plane angle from x toward y (bins {hist['edges']}°): {hist['counts']}")
