"""The one way a report figure is written: rendered headless (Agg), saved atomically at one resolution, and
optionally accompanied by a strict-JSON sidecar holding the numbers behind it (schema `saeseeds.figure/1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before any figure exists: reports are written on headless machines

from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from saeseeds.atomic import atomic_write, atomic_write_text, json_text  # noqa: E402
from saeseeds.records import stamp  # noqa: E402

FIGURE_DPI = 120
"""Resolution of every raster figure."""
SIDECAR_SCHEMA = "saeseeds.figure/1"
"""The sidecar's `schema`: beside it, the numbers' own keys (numbers that are not a mapping go under `numbers`)."""


def sidecar_path(path: str | Path) -> Path:
    """Where the numbers behind the figure at `path` go: the same name with a .json suffix."""
    return Path(path).with_suffix(".json")


def save_figure(fig: Figure, path: str | Path, numbers: Any = None) -> Path:
    """Write `fig` to `path` atomically (format from the suffix, PNG by default) and close it; returns `path`.

    With `numbers`, also write them to `sidecar_path(path)` as strict JSON (NaN/±inf → null), stamped with
    `schema` and `saeseeds_version`; numbers that cannot be serialised raise TypeError before any file is written.
    The figure is closed even when writing fails.
    """
    path = Path(path)
    fmt = path.suffix.removeprefix(".").lower() or "png"
    try:
        sidecar = None if numbers is None else json_text(stamp(  # fail before writing anything
            SIDECAR_SCHEMA, numbers if isinstance(numbers, Mapping) else {"numbers": numbers}))
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=FIGURE_DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)
    if sidecar is not None:
        atomic_write_text(sidecar_path(path), sidecar)
    return path
