"""A study's and a pool's sections, designed for them: the results as tables of percentages with their spread,
the figures at a readable size, and the files themselves (study.json, table.csv, pool.json) folded away.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from saeseeds.report.html.blocks import (
    Cell,
    Details,
    Group,
    Note,
    Section,
    Table,
    cell,
    fmt,
    pct,
    pct_spread,
    short_json,
)
from saeseeds.report.html.generic import csv_table, json_blocks, read_json
from saeseeds.report.html.recipes import recipe_blocks
from saeseeds.signflip import VERDICT_WORDS

STUDY_SCHEMA = "saeseeds.study/1"
POOL_SCHEMA = "saeseeds.pooling/1"


def _fixed(value: Any, digits: int) -> str:
    """A number with `digits` decimals (— when missing)."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else fmt(value)


def _spread(rec: dict[str, Any], key: str, *, percent: bool = False, digits: int = 3) -> Cell:
    """`<key>_mean ± <key>_sd` of a study row as one right-aligned cell (percentages, or `digits` decimals)."""
    mean, sd = rec.get(f"{key}_mean"), rec.get(f"{key}_sd")
    if percent:
        return Cell(pct_spread(mean, sd), "num")
    return Cell(_fixed(mean, digits) + ("" if sd is None else f" ± {_fixed(sd, digits)}"), "num")


def _raw(path: Path, data: Any) -> Details:
    """A JSON file as it is, folded."""
    return Details(f"{path.name} (raw)", short_json(data))


def is_study(path: Path) -> bool:
    """The directory holds a study.json this renderer knows (else the generic one shows it)."""
    data = read_json(path / "study.json")
    return isinstance(data, dict) and data.get("schema") == STUDY_SCHEMA and isinstance(data.get("rows"), list)


def study_results(rows: list[dict[str, Any]]) -> Table:
    """One row per configuration and milestone: what was shared, how stable, and how well it reconstructs."""
    out = []
    for r in rows:
        m = r.get("milestone")
        when = f"{m:.0%}" if isinstance(m, (int, float)) else fmt(m)
        out.append([cell(r.get("sae_name") or r.get("set")), Cell(when, "num"),
                    _spread(r, "shared_fraction", percent=True), _spread(r, "decoder_shared_fraction", percent=True),
                    _spread(r, "mmcs"), Cell(pct(r.get("stable_fraction_alive")), "num"),
                    Cell(_fixed(r.get("stability_reappears_mean"), 3), "num"),
                    Cell(_fixed(r.get("dead_latents_mean"), 1), "num"), _spread(r, "fvu"), _spread(r, "l0", digits=1)])
    return Table(["configuration", "milestone", "shared", "decoder-only", "MMCS", "stable of alive",
                  "reappearance", "dead per seed", "FVU", "L0"], out,
                 "Shared and stable latents at each milestone",
                 "mean ± sd over ordered seed pairs (shared, MMCS) or seeds (FVU, L0); shared: Paulo & Belrose "
                 "(decoder and encoder); decoder-only: the decoder matching alone; stable of alive: under the "
                 "study's rule, over the latents that fire; reappearance: Gerasimov's per-latent stability "
                 "averaged over every latent; milestone: share of training done (its tokens are in table.csv); dead per seed: never fired on the held-out rows")


def only_in_base_table(curves: dict[str, Any]) -> Table | None:
    """Share of a base seed's latents found in none of M other seeds, M = 0 … S−1, per configuration."""
    rows, width = [], 0
    for label, rec in curves.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("mean"), list):
            continue
        sd = rec.get("sd") or [None] * len(rec["mean"])
        width = max(width, len(rec["mean"]))
        rows.append([cell(label), *[Cell(pct_spread(m, s), "num") for m, s in zip(rec["mean"], sd)]])
    if not rows:
        return None
    rows = [r + [Cell("—", "muted")] * (width + 1 - len(r)) for r in rows]
    return Table(["configuration", *[f"M = {m}" for m in range(width)]], rows,
                 "Found only in the base seed, against the number of other seeds M",
                 "share of a base seed's latents found in none of M other seeds (dead ones included), mean ± sd "
                 "over bases and orderings, at the end of training")


def study_section(out: Any, rel: str, figures: Callable[[Path], list[Any]]) -> Section:
    """A study: what was swept, the results table, the only-in-base table, the figures, then the files."""
    data = read_json(out.path / "study.json") or {}
    sec = Section("", "", "study", str(out.path))
    grid = [g.get("name") for g in data.get("grid", []) if isinstance(g, dict)]
    milestones = [pct(m.get("fraction")) for m in data.get("milestones", []) if isinstance(m, dict)]
    rule = data.get("rule") or {}
    sec.blocks.append(Note(
        f"{len(grid)} configuration(s) ({', '.join(map(str, grid))}) × {len(data.get('seeds') or [])} seeds at "
        f"{', '.join(map(str, data.get('hookpoints') or []))}, compared at {', '.join(milestones) or 'the end'} of "
        f"training under the {rule.get('stability', 'shared')} estimator, cosine > {fmt(rule.get('threshold'))}."))
    sec.blocks.extend(recipe_blocks(out.path))
    rows = [r for r in data.get("rows", []) if isinstance(r, dict)]
    if rows:
        sec.blocks.append(study_results(rows))
    curves = only_in_base_table(data.get("only_in_base") or {})
    if curves is not None:
        sec.blocks.append(curves)
    sec.blocks.extend(figures(out.path))
    files: list[Any] = [_raw(out.path / "study.json", data)]
    if (out.path / "table.csv").is_file():
        table = csv_table(out.path / "table.csv")
        files.insert(0, table)
    sec.blocks.append(Group("The files: table.csv (every column) and study.json", files))
    return sec


# --------------------------------------------------------------------------------------------
# pool


def is_pool(path: Path) -> bool:
    """The directory holds a pool.json with a summary this renderer knows."""
    data = read_json(path / "pool.json")
    return isinstance(data, dict) and isinstance(data.get("summary"), dict)


def _spread_dict(rec: Any, *, percent: bool = False) -> str:
    """A {mean, std} record (or a bare number) as text."""
    if isinstance(rec, dict):
        if percent:
            return pct_spread(rec.get("mean"), rec.get("std"))
        return fmt(rec.get("mean")) + (f" ± {fmt(rec.get('std'))}" if rec.get("std") is not None else "")
    return pct(rec) if percent else fmt(rec)


def pool_summary(summary: dict[str, Any]) -> Table:
    """Pooled against single seeds (and the longer-trained baseline), one row per measure."""
    ev, sf = summary.get("explained_variance") or {}, summary.get("shared_fraction") or {}
    re_ = summary.get("reappears_in_held_out_seeds") or {}
    rows = [
        [cell("explained variance (held-out)"), Cell(_spread_dict(ev.get("pooled_all"), percent=True), "num"),
         Cell(_spread_dict(ev.get("single_seeds"), percent=True), "num"),
         Cell(_spread_dict(ev.get("baseline"), percent=True), "num")],
        [cell("shared between split halves"), Cell(_spread_dict(sf.get("pooled_pairs"), percent=True), "num"),
         Cell(_spread_dict(sf.get("single_pairs"), percent=True), "num"),
         Cell(_spread_dict(sf.get("baseline_pairs"), percent=True), "num")],
        [cell("reappears in held-out seeds"), Cell(_spread_dict(re_.get("pooled"), percent=True), "num"),
         Cell(_spread_dict(re_.get("single"), percent=True), "num"),
         Cell(_spread_dict(re_.get("baseline"), percent=True), "num")],
    ]
    return Table(["measure", "pooled", "single seeds", "baseline (longer training)"], rows,
                 f"Pooled SAE ({fmt(summary.get('pooled_latents'))} latents from {fmt(summary.get('seeds'))} seeds) "
                 "against single seeds", "mean ± sd over seeds or splits; — where not computed")


def pool_verdicts(verdicts: Any) -> Table | None:
    """The pool's claims, each with its verdict and the numbers it rests on."""
    items = list(verdicts.values()) if isinstance(verdicts, dict) else verdicts if isinstance(verdicts, list) else []
    rows = [[cell(str(v.get("claim", "")).replace("_", " ")),
             Cell(VERDICT_WORDS.get(v.get("holds"), "undetermined"), {True: "yes", False: "no"}.get(v.get("holds"), "")),
             cell(v.get("p_value")), Cell(_spread_dict(v.get("delta_shared_fraction"), percent=True), "num"),
             Cell(_spread_dict(v.get("delta_explained_variance"), percent=True), "num"), cell(v.get("reason") or "")]
            for v in items if isinstance(v, dict)]
    if not rows:
        return None
    return Table(["claim", "verdict", "p", "Δ shared", "Δ explained variance", "reason"], rows, "Pool verdicts")


def pool_section(out: Any, rel: str, figures: Callable[[Path], list[Any]]) -> Section:
    """A pool: the summary as a table of percentages, its verdicts, figures, then pool.json folded."""
    data = read_json(out.path / "pool.json") or {}
    summary = data.get("summary") or {}
    sec = Section("", "", "pool", str(out.path))
    sec.blocks.append(pool_summary(summary))
    verdicts = pool_verdicts(summary.get("verdicts"))
    if verdicts is not None:
        sec.blocks.append(verdicts)
    sec.blocks.extend(figures(out.path))
    sec.blocks.append(Group("The file: pool.json, as tables and raw",
                            [*json_blocks(data, "pool.json", skip=("summary",)),
                             _raw(out.path / "pool.json", data)]))
    return sec

