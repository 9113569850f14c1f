"""The study's flat table: one row per seed set x milestone, written as CSV and Parquet (pandas + pyarrow)."""

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
