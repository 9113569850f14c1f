"""The study's flat table: one row per seed set x milestone, written as CSV and Parquet (pandas + pyarrow), and
the text summary of it that `study` and `demo` print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeseeds.atomic import atomic_write, atomic_write_text


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    """table.csv and table.parquet (pandas + pyarrow), both written atomically."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    for column in ("k", "target_l0"):  # None (no k / no target) is a missing number, not an object
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    atomic_write_text(out / "table.csv", frame.to_csv(index=False))
    atomic_write(out / "table.parquet", lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))


def format_table(rows: list[dict[str, Any]]) -> str:
    """The shared fraction of every set at every milestone, with the achieved L0, as fixed-width text ('' when
    there are no rows)."""
    if not rows:
        return ""
    width = max(len(r["set"]) for r in rows)
    lines = [f"{'set':<{width}}  {'tokens':>10}  {'shared (mean ± sd)':>18}  {'dec-only':>8}  {'MMCS':>6}  "
             f"{'L0':>6}  {'FVU':>6}  {'dead':>6}  {'unstable*':>9}"]
    for r in sorted(rows, key=lambda r: (r["set"], r["step"])):
        lines.append(f"{r['set']:<{width}}  {r['tokens']:>10,}  {r['shared_fraction_mean']:>10.1%} "
                     f"±{r['shared_fraction_sd']:>5.1%}  {r['decoder_shared_fraction_mean']:>8.1%}  "
                     f"{r['mmcs_mean']:>6.3f}  {r['l0_mean']:>6.1f}  {r['fvu_mean']:>6.3f}  "
                     f"{_percent(r.get('dead_fraction_mean')):>6}  {_percent(r.get('unstable_fraction_alive')):>9}")
    lines.append("dead: share of latents that never fired on the held-out rows (they count in the shared "
                 "fraction's denominator); unstable*: share of the alive latents found in no other seed")
    return "\n".join(lines)


def _percent(value: Any) -> str:
    """A fraction as a percentage; 'n/a' for a missing or NaN value."""
    return "n/a" if value is None or value != value else f"{value:.1%}"


def format_recipes(path: Path) -> str:
    """recipes.json as fixed-width text: one line per recipe (stability, PW-MCC, FVU, cost) and its verdict."""
    import json

    record = json.loads(Path(path).read_text())
    rows = record.get("rows") or []
    if not rows:
        return ""
    width = max(len(str(r["recipe"])) for r in rows)
    est = record.get("estimator", "shared")
    lines = [f"{'recipe':<{width}}  {'shared':>14}  {'stability':>15}  {'PW-MCC':>6}  {'MMCS':>6}  {'FVU':>15}  "
             f"{'dead':>6}  {'L0':>5}  {'s/SAE':>6}  verdict vs {record.get('reference')}"]
    for r in rows:
        lines.append(f"{r['recipe']:<{width}}  {_pm(r, 'shared_fraction', pct=True):>14}  "
                     f"{_pm(r, f'stability_{est}'):>15}  {_num(r.get('pw_mcc_mean')):>6}  {_num(r.get('mmcs_mean')):>6}  "
                     f"{_pm(r, 'fvu'):>15}  {_percent(r.get('dead_fraction_mean')):>6}  "
                     f"{_num(r.get('l0_mean'), 1):>5}  {_num(r.get('train_seconds_per_sae'), 0):>6}  "
                     f"{r.get('verdict') or ''}")
    for name, v in (record.get("verdicts") or {}).items():
        if v.get("reason"):
            lines.append(f"{name}: {v['reason']}")
    return "\n".join(lines)


def _num(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; 'n/a' for a missing or NaN value."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _pm(row: dict[str, Any], key: str, *, pct: bool = False) -> str:
    """`<key>_mean ± <key>_sd` of a row."""
    mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
    if pct:
        return f"{_percent(mean)} ± {_percent(sd)}" if sd is not None else _percent(mean)
    return f"{_num(mean)} ± {_num(sd)}" if sd is not None else _num(mean)
