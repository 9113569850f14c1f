"""`saeseeds synthetic [CONFIG.toml] --out DIR`: train seeds on known ground truth and report what they recover."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saeseeds.commands._flags import add_rule_flags, add_threads_flag, rule_from_args


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


def run(args: argparse.Namespace) -> int:
    from saeseeds.api.synthetic_experiment import synthetic

    result = synthetic(args.config, args.out, overrides=args.overrides, rule=rule_from_args(args),
                       report_only=args.report_only)
    for found in result.configs:
        _print_summary(found.key, found.summary, result.baseline_deg)
        if "composed" in found.summary:
            _print_composed(found.summary["composed"])
    print(f"report: {result.report_dir}")
    return 0


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
