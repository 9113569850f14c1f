"""Range checks shared by every config section: each failure is one ConfigError naming field, value and allowed range."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable
from typing import Any

from saeseeds.errors import ConfigError
from saeseeds.names import RUN_TOP_LEVEL, check_name

SEED_LIMIT = 2**63
"""Seeds must fit torch.Generator.manual_seed and numpy's SeedSequence: 0 <= seed < 2**63."""
INT_LIMIT = 2**63 - 1
"""The largest value of an integer field without its own upper bound: counts are stored as int64."""

_DEVICE = re.compile(r"auto|cpu|mps|meta|(cuda|xpu)(:\d+)?")


def fail(path: str, value: Any, allowed: str, reason: str = "") -> ConfigError:
    """The error for `path = value`: '<path> = <value> is out of range; allowed: <allowed>' (or the reason)."""
    why = reason or "is out of range"
    return ConfigError(f"{path} = {value!r} {why}; allowed: {allowed}")


def check_int(path: str, value: Any, lo: int, hi: int | None = None, note: str = "") -> None:
    """An integer in [lo, hi] (hi None: up to INT_LIMIT, as counts end up in int64 tensors and numpy arrays);
    `note` explains special values such as 0."""
    allowed = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    allowed += f" ({note})" if note else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, value, allowed, "is not an integer")
    if hi is None and value > INT_LIMIT:
        raise fail(path, value, f"an integer in [{lo}, 2**63 - 1] (a 64-bit integer)", "is too large")
    if value < lo or (hi is not None and value > hi):
        raise fail(path, value, allowed)


def check_finite_fields(section: Any, where: str) -> None:
    """Every float field of a config dataclass (and every float in a list field) is finite: a NaN or inf is
    refused even in a field the chosen architecture or source ignores, since it is stored with the run."""
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        values = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, v in values:
            if isinstance(v, float) and not math.isfinite(v):
                name = f"{where}.{item.name}" + ("" if i is None else f"[{i}]")
                raise fail(name, v, "a finite number", "is not finite")


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
    """A name usable as one directory level (`saeseeds.names.name_problem`); empty is allowed (a default applies)."""
    if isinstance(value, str) and not value:
        return
    _check_name(path, value, note)


def check_hookpoint(path: str, value: Any, note: str = "") -> None:
    """A hookpoint: it names the run's folder of its checkpoints, so one visible folder name, not a run file's."""
    _check_name(path, value, note, RUN_TOP_LEVEL)


def _check_name(path: str, value: Any, note: str, reserved: frozenset[str] = frozenset()) -> None:
    """ConfigError naming `path` unless `value` passes `saeseeds.names.check_name` (the one rule for such names)."""
    check_name(value, path, ConfigError, reserved, note)


WEIGHT_BYTES = 4
"""Bytes of one float32 encoder or decoder weight."""


def machine_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the operating system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_memory(where: str, sae: Any, d_in: int) -> None:
    """Refuse, before anything is allocated, an SAE whose float32 weights alone (2 x num_latents x d_in) exceed this
    machine's memory: it could never be built, trained or loaded here (training needs about four times that)."""
    memory = machine_memory()
    n = sae.resolved_num_latents(d_in)
    need = 2 * n * d_in * WEIGHT_BYTES
    if memory is None or need <= memory:
        return
    most = memory // (2 * d_in * WEIGHT_BYTES)
    field, value = ("num_latents", sae.num_latents) if sae.num_latents > 0 else ("expansion_factor",
                                                                                 sae.expansion_factor)
    raise fail(f"{where}.{field}", value,
               f"at most {most:,} latents at d_in {d_in} on this machine (encoder and decoder, float32)",
               f"gives {n:,} latents, whose weights alone need {_gib(need)}, more than this machine's "
               f"{_gib(memory)} of memory")


def _gib(n: int) -> str:
    """Bytes as GiB, for messages."""
    return f"{n / 2**30:,.1f} GiB"
