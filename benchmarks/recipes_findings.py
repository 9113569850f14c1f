"""The recipe comparison's findings as markdown, every number read from a study directory's files (recipes.json,
study.json, pool/pool.json): the command, machine and wall time, the yardstick table, the verdicts with their
reasons, functional correspondence by firing frequency, and the figure. Nothing here is typed by hand.

    python benchmarks/recipes_findings.py runs/recipes > /tmp/recipes.md
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from saeseeds.signflip import VERDICT_WORDS


def _load(path: Path) -> dict[str, Any]:
    """A JSON record; SystemExit naming the file when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"{path}: cannot read ({err})") from err


def _f(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; — when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def _pm(row: dict[str, Any], key: str, digits: int = 3) -> str:
    """`mean ± sd` of a row's `<key>_mean` and `<key>_sd`."""
    mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
    return _f(mean, digits) + ("" if sd is None else f" ± {_f(sd, digits)}")


def header(study: dict[str, Any], recipes: dict[str, Any], out: Path) -> list[str]:
    """Command, machine, seeds, matched L0, rule and wall time."""
    machine = recipes.get("machine") or {}
    seconds = float(study.get("seconds") or 0) + float(study.get("seconds_before") or 0)
    rule = recipes.get("rule") or {}
    return [
        f"Command: `saeseeds study CONFIG --out {out}` (the config as given: `{out / str(study.get('config'))}`); "
        f"wall time {seconds / 60:.1f} min (study.json `seconds` + `seconds_before`).",
        f"Machine: {machine.get('cpu', 'unknown')}, {machine.get('cores')} cores, torch threads "
        f"{machine.get('torch_threads')}; load average at start {machine.get('load_average_start')}, at the end "
        f"{machine.get('load_average_end')}.",
        f"Seeds {recipes.get('seeds')}, hookpoint `{recipes.get('hookpoint')}`, matched L0 k = {recipes.get('k')}; "
        f"rule: {rule.get('stability')} stability, cosine > {rule.get('threshold')}; reference "
        f"`{recipes.get('reference')}`; FVU margin {recipes.get('fvu_margin')}, α = {recipes.get('alpha')} (Holm).",
    ]


def table(recipes: dict[str, Any]) -> list[str]:
    """The yardstick, one line per recipe."""
    lines = ["| recipe | kind | shared | stability (shared) | stability (reappears) | PW-MCC | MMCS | dead | FVU | L0 "
             "| ΔFVU matched | ΔFVU hard neg. | tokens / SAE | train s / SAE | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recipes.get("rows") or []:
        lines.append(
            f"| {r['recipe']} | {r.get('kind')} | {_pm(r, 'shared_fraction')} | {_pm(r, 'stability_shared')} | "
            f"{_pm(r, 'stability_reappears')} | {_pm(r, 'pw_mcc')} | {_pm(r, 'mmcs')} | {_pm(r, 'dead_fraction')} | "
            f"{_pm(r, 'fvu')} | {_pm(r, 'l0', 1)} | {_pm(r, 'fc_matched_dfvu', 4)} | "
            f"{_pm(r, 'fc_negative_dfvu', 4)} | {r.get('tokens_per_sae') or '—'} | "
            f"{_f(r.get('train_seconds_per_sae'), 0)} | {r.get('verdict') or '—'} |")
    return lines


def verdicts(recipes: dict[str, Any]) -> list[str]:
    """Each verdict with its per-seed differences, p values and reason."""
    lines = []
    for name, v in (recipes.get("verdicts") or {}).items():
        word = VERDICT_WORDS.get(v.get("holds"), "undetermined")
        deltas = ", ".join(f"{d:+.4f}" for d in v.get("delta_stability") or [])
        dfvu = ", ".join(f"{d:+.4f}" for d in v.get("delta_fvu") or [])
        lines.append(f"- **{name}**: {word} (p = {_f(v.get('p_value'), 3)}, Holm {_f(v.get('p_holm'), 3)}); "
                     f"Δ stability per seed [{deltas}], Δ FVU per seed [{dfvu}]"
                     + (f"; {v['reason']}" if v.get("reason") else ""))
    long_seed = recipes.get("long_seed")
    if long_seed:
        held = long_seed.get("heldout") or {}
        lines.append(f"- **long single seed** ({long_seed.get('tokens'):,} tokens, seed {long_seed.get('seed')}): "
                     f"held-out FVU {_f(held.get('fvu'))}, L0 {_f(held.get('l0'), 1)}; "
                     f"{(long_seed.get('verdict') or {}).get('reason', '')}")
    pool = (recipes.get("pooling") or {}).get("summary")
    if pool:
        for key, v in (pool.get("verdicts") or {}).items():
            word = VERDICT_WORDS.get(v.get("holds"), "undetermined")
            lines.append(f"- **pooling, {key}**: {word}" + (f" — {v['reason']}" if v.get("reason") else ""))
    return lines


def recovery(recipes: dict[str, Any]) -> list[str]:
    """Synthetic runs: true features recovered per recipe, in total and per kind (mean over seeds); [] otherwise."""
    rows = [r for r in recipes.get("rows") or [] if r.get("recovered_mean") is not None]
    if not rows:
        return []
    kinds = ("single", "identifiable", "ambiguous", "control")
    lines = ["True features recovered (decoder cosine > 0.9 to a Hungarian-matched true feature; mean over seeds):", "",
             "| recipe | recovered | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for r in rows:
        lines.append(f"| {r['recipe']} | {_pm(r, 'recovered', 1)} | "
                     + " | ".join(_f(r.get(f"recovered_{k}_mean"), 1) for k in kinds) + " |")
    return [*lines, ""]


def functional(recipes: dict[str, Any]) -> list[str]:
    """Matched vs hard-negative substitution ΔFVU per firing-frequency bin, per recipe."""
    lines = ["| recipe | log10 frequency | latent pairs | ΔFVU matched | ΔFVU hard negative | ΔFVU ablation |",
             "|---|---|---|---|---|---|"]
    for name, rec in (recipes.get("functional") or {}).items():
        for b in (rec.get("summary") or {}).get("by_frequency") or []:
            if b.get("pairs"):
                lo, hi = b["log10_frequency"]
                cells = [_pm({f"x_{k}": v for k, v in (b.get(key) or {}).items()}, "x", 4)
                         for key in ("matched", "negative", "ablation")]
                lines.append(f"| {name} | [{lo:g}, {hi:g}) | {b['pairs']} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a study directory holding recipes.json")
    parser.add_argument("--title", default="Which training recipe gives reproducible features?",
                        help="the section heading")
    args = parser.parse_args(argv)
    recipes = _load(args.study / "recipes.json")
    study = _load(args.study / "study.json")
    parts = [f"## {args.title}", "", *header(study, recipes, args.study), "",
             *table(recipes), "", *recovery(recipes), "Verdicts (claim: " + str(recipes.get("claim")) + "):", "",
             *verdicts(recipes), "",
             "Functional correspondence (mean ± sd over ordered seed pairs; output recovered: not available):", "",
             *functional(recipes), "", f"Figure: `{recipes.get('figure')}` (numbers beside it as JSON)."]
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
