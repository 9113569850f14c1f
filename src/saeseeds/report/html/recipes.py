"""A recipe comparison inside a study's section (recipes.json, docs/study.md "Recipe comparison"): the yardstick
table (one row per recipe, mean ± sd over seeds or seed pairs), the verdicts against the reference with their
reasons, and the functional correspondence by firing frequency; the Pareto figure is among the study's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeseeds.report.html.blocks import Cell, Note, Table, cell, fmt, pct, pct_spread
from saeseeds.report.html.generic import read_json
from saeseeds.signflip import VERDICT_WORDS

RECIPES_SCHEMA = "saeseeds.recipes/1"
VERDICT_CLASS = {"holds": "yes", "does not hold": "no"}


def _pm(row: dict[str, Any], key: str, digits: int = 3) -> Cell:
    """`<key>_mean ± <key>_sd` with `digits` decimals (— when missing)."""
    mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
    if not isinstance(mean, (int, float)):
        return Cell("—", "muted")
    return Cell(f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if isinstance(sd, (int, float)) else ""), "num")


def recipes_table(record: dict[str, Any]) -> Table:
    """The yardstick: sharing, stability (both estimators), PW-MCC, MMCS, dead, FVU, L0, cost, verdict."""
    rows = []
    for r in record.get("rows") or []:
        verdict = r.get("verdict") or "—"
        seconds = r.get("train_seconds_per_sae")
        rows.append([cell(r.get("recipe")), cell(r.get("kind")), Cell(pct_spread(r.get("shared_fraction_mean"),
                                                                                r.get("shared_fraction_sd")), "num"),
                     _pm(r, "stability_shared"), _pm(r, "stability_reappears"), _pm(r, "pw_mcc"), _pm(r, "mmcs"),
                     Cell(pct(r.get("dead_fraction_mean")), "num"), _pm(r, "fvu"), _pm(r, "l0", 1),
                     _pm(r, "lm_loss_recovered"), _pm(r, "fc_matched_dfvu", 4), _pm(r, "fc_negative_dfvu", 4),
                     Cell(fmt(r.get("tokens_per_sae")), "num"),
                     Cell(f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "—", "num"),
                     Cell(verdict, VERDICT_CLASS.get(verdict, ""))])
    return Table(["recipe", "kind", "shared", "stability (shared)", "stability (reappears)", "PW-MCC", "MMCS", "dead",
                  "FVU", "L0", "LM loss recovered", "ΔFVU matched", "ΔFVU hard negative", "tokens / SAE",
                  "train s / SAE", f"verdict vs {record.get('reference')}"], rows,
                 "Recipe comparison at matched L0",
                 "mean ± sd over ordered seed pairs (shared, PW-MCC, MMCS, ΔFVU) or seeds (stability, dead, FVU, L0); "
                 "ΔFVU: the FVU added by substituting seed B's matched latent (or its hard negative: the best other "
                 "latent of B in the same firing-frequency bin) for seed A's; — where not measured")


def verdicts_table(record: dict[str, Any]) -> Table | None:
    """Each recipe's verdict with the numbers it rests on and its reason."""
    rows = []
    for name, v in (record.get("verdicts") or {}).items():
        if not isinstance(v, dict):
            continue
        word = VERDICT_WORDS.get(v.get("holds"), "undetermined")
        effect = v.get("effect") or {}
        rows.append([cell(name), Cell(word, VERDICT_CLASS.get(word, "")), cell(v.get("n_seeds")),
                     Cell(f"{effect['mean']:+.4f}" if isinstance(effect.get("mean"), (int, float)) else "—", "num"),
                     cell(v.get("p_value")), cell(v.get("p_holm")), cell(v.get("reason") or "")])
    if not rows:
        return None
    return Table(["recipe", "verdict", "seeds", "Δ stability", "p", "p (Holm)", "reason"], rows,
                 f"Verdicts: {record.get('claim')} ({record.get('reference')})",
                 f"per seed, {record.get('estimator')} stability of the recipe minus the reference's at the same "
                 f"seed; exact one-sided sign-flip test, Holm over the recipes at α = {fmt(record.get('alpha'))}; "
                 f"FVU non-inferiority margin {fmt(record.get('fvu_margin'))} in every seed")


def functional_table(record: dict[str, Any]) -> Table | None:
    """Matched vs hard-negative substitution ΔFVU per firing-frequency bin, per recipe."""
    rows = []
    for name, rec in (record.get("functional") or {}).items():
        for b in ((rec or {}).get("summary") or {}).get("by_frequency") or []:
            if not b.get("pairs"):
                continue
            lo, hi = b.get("log10_frequency") or [None, None]
            rows.append([cell(name), cell(f"[{fmt(lo)}, {fmt(hi)})"), cell(b.get("pairs")),
                         *[Cell(_spread_text(b.get(k)), "num") for k in ("matched", "negative", "ablation")]])
    if not rows:
        return None
    return Table(["recipe", "log10 frequency of B's latent", "latent pairs", "ΔFVU matched", "ΔFVU hard negative",
                  "ΔFVU ablation"], rows, "Functional correspondence by firing frequency",
                 "mean ± sd over ordered seed pairs of each pair's bin mean; output recovered: not available",
                 collapsed=True)


def _spread_text(rec: Any) -> str:
    if not isinstance(rec, dict) or not isinstance(rec.get("mean"), (int, float)):
        return "—"
    return f"{rec['mean']:.4f}" + (f" ± {rec['sd']:.4f}" if isinstance(rec.get("sd"), (int, float)) else "")


def recipe_blocks(path: Path) -> list[Any]:
    """The blocks of a study directory's recipes.json (none when there is no recipe comparison)."""
    record = read_json(path / "recipes.json")
    if not isinstance(record, dict) or record.get("schema") != RECIPES_SCHEMA:
        return []
    blocks: list[Any] = [Note(
        f"Recipe comparison at matched L0 (k = {fmt(record.get('k'))}) over seeds {fmt(record.get('seeds'))}, "
        f"reference {record.get('reference')}; the Pareto figure (recipes_pareto.png) plots mean stability against "
        "FVU.")]
    blocks.append(recipes_table(record))
    blocks.extend(b for b in (verdicts_table(record), functional_table(record)) if b is not None)
    return blocks
