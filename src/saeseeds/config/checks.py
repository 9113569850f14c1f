"""Range checks shared by every config section: each failure is one ConfigError naming field, value and allowed range."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from saeseeds.errors import ConfigError

SEED_LIMIT = 2**63
"""Seeds must fit torch.Generator.manual_seed and numpy's SeedSequence: 0 <= seed < 2**63."""

_DEVICE = re.compile(r"auto|cpu|mps|meta|(cuda|xpu)(:\d+)?")


def fail(path: str, value: Any, allowed: str, reason: str = "") -> ConfigError:
    """The error for `path = value`: '<path> = <value> is out of range; allowed: <allowed>' (or the reason)."""
    why = reason or "is out of range"
    return ConfigError(f"{path} = {value!r} {why}; allowed: {allowed}")


def check_int(path: str, value: Any, lo: int, hi: int | None = None, note: str = "") -> None:
    """An integer in [lo, hi] (hi None: no upper bound); `note` explains special values such as 0."""
    allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    allowed += f" ({note})" if note else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, value, allowed, "is not an integer")
    if value < lo or (hi is not None and value > hi):
        raise fail(path, value, allowed)


def check_float(
    path: str,
    value: Any,
    lo: float,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    note: str = "",
) -> None:
    """A finite number in the interval from lo to hi, each end open or closed (NaN and inf are rejected)."""
    left, right = ("(" if lo_open else "["), (")" if hi_open or hi == math.inf else "]")
    allowed = f"a finite number in {left}{lo:g}, {'inf' if hi == math.inf else f'{hi:g}'}{right}"
    allowed += f" ({note})" if note else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(path, value, allowed, "is not a number")
    inside = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not (math.isfinite(value) and inside):
        raise fail(path, value, allowed)


def check_choice(path: str, value: Any, choices: Iterable[str]) -> None:
    """One of a fixed set of strings."""
    options = tuple(choices)
    if value not in options:
        raise fail(path, value, f"one of {', '.join(options)}", "is not a known value")


def check_text(path: str, value: Any, note: str = "") -> None:
    """A non-empty string."""
    allowed = "a non-empty string" + (f" ({note})" if note else "")
    if not isinstance(value, str) or not value.strip():
        raise fail(path, value, allowed, "is empty" if isinstance(value, str) else "is not a string")


def check_bool(path: str, value: Any) -> None:
    """true or false (a dataclass built in Python can hold anything)."""
    if not isinstance(value, bool):
        raise fail(path, value, "true or false", "is not a boolean")


def check_device(path: str, value: Any) -> None:
    """A device name torch can parse; whether the device exists is checked when the run starts."""
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise fail(path, value, "auto, cpu, cuda, cuda:N, mps, xpu or xpu:N", "is not a device name")


def check_seeds(path: str, value: Any) -> None:
    """A non-empty list of distinct seeds, each in [0, 2**63)."""
    allowed = "a non-empty list of distinct integers in [0, 2**63)"
    if not isinstance(value, (list, tuple)) or not value:
        raise fail(path, value, allowed, "is empty: at least one seed is needed")
    for i, seed in enumerate(value):
        check_int(f"{path}[{i}]", seed, 0, SEED_LIMIT - 1)
    if len(set(value)) != len(value):
        raise fail(path, value, allowed, "repeats a seed: seeds must be distinct")


def check_dir_name(path: str, value: Any, note: str = "") -> None:
    """A name usable as one directory level: no path separator, not '.' or '..' (empty is allowed)."""
    allowed = "a name without '/' or '\\', not '.' or '..'" + (f" ({note})" if note else "")
    if not isinstance(value, str):
        raise fail(path, value, allowed, "is not a string")
    if value and ("/" in value or "\\" in value or value.strip(".") == "" or value != value.strip()):
        raise fail(path, value, allowed, "is not a valid directory name")
