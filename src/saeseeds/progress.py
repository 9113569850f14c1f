"""Progress output that suits where it goes: live bars on a terminal, rare one-line status off it, none when quiet.

Every bar of saeseeds is made by `tqdm` from this module. On a terminal it is tqdm's bar. Off a terminal (a log
file, a pipe, a batch job) a bar prints no carriage-return updates: at most one plain status line every
`status_interval()` seconds (30 s by default, `SAESEEDS_STATUS_EVERY` to change it), so a log grows with wall
time, never with the step count, and a short or failing command prints nothing but its result or its one error
line. `set_quiet()` (the CLI's `--quiet`) silences every bar and status line, and the loading bars and info
messages of transformers / datasets / huggingface_hub.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm as _tqdm

STATUS_ENV = "SAESEEDS_STATUS_EVERY"
"""Environment variable: seconds between off-terminal status lines (default DEFAULT_STATUS_S; 0 disables them)."""
DEFAULT_STATUS_S = 30.0

_quiet = False


def on_terminal() -> bool:
    """True when stderr (where bars go) is an interactive terminal."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def is_quiet() -> bool:
    """True after `set_quiet(True)`: no bars, no status lines."""
    return _quiet


def set_quiet(quiet: bool = True) -> None:
    """Turn every saeseeds bar and status line off (or back on); quiet also silences the HF libraries."""
    global _quiet
    _quiet = bool(quiet)
    if _quiet:
        quiet_libraries(force=True)


def status_interval() -> float:
    """Seconds between off-terminal status lines (`SAESEEDS_STATUS_EVERY`, default 30; ≤ 0: none)."""
    raw = os.environ.get(STATUS_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_STATUS_S
    except ValueError:
        return DEFAULT_STATUS_S


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class tqdm(_tqdm):  # noqa: N801 - a drop-in for tqdm.tqdm
    """`tqdm.tqdm` on a terminal; off it, a throttled one-line status; nothing when disabled or quiet."""

    def __init__(self, *args: Any, disable: bool | None = False, **kwargs: Any) -> None:
        off = bool(disable) or _quiet
        interval = status_interval()
        self._status = not off and not on_terminal() and interval > 0
        self._status_every = interval
        self._status_desc = str(kwargs.get("desc") or "")
        self._status_unit = str(kwargs.get("unit") or "it")
        self._status_postfix = ""
        self._status_start = self._status_last = time.monotonic()
        self._status_lines = 0
        self._status_initial = float(kwargs.get("initial") or 0)
        super().__init__(*args, disable=off or not on_terminal(), **kwargs)

    # ---- status mode (off a terminal): tqdm is disabled, these keep the count and print the lines
    def update(self, n: float | None = 1) -> bool | None:
        if not self._status:
            return super().update(n)
        self.n += 1 if n is None else n
        now = time.monotonic()
        if now - self._status_last >= self._status_every:
            self._status_last = now
            self._print_status(now)
        return None

    def __iter__(self) -> Iterator[Any]:
        if not self._status:
            yield from super().__iter__()
            return
        for item in self.iterable:
            yield item
            self.update(1)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any) -> None:
        if not self._status:
            super().set_postfix(ordered_dict, refresh=refresh, **kwargs)
            return
        items = dict(ordered_dict or {}) | kwargs
        self._status_postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if self._status and self._status_lines:  # a run long enough to have reported ends with a last line
            self._print_status(time.monotonic())
            self._status_lines = 0
        self._status = False
        super().close()

    def _print_status(self, now: float) -> None:
        elapsed = now - self._status_start
        done = f"{self.n:,.0f}"
        if self.total:
            done += f"/{self.total:,.0f} ({self.n / self.total:.0%})"
        parts = [f"{self._status_desc or 'progress'}: {done} {self._status_unit}", f"elapsed {_clock(elapsed)}"]
        rate = (self.n - self._status_initial) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.3g} {self._status_unit}/s")
            if self.total and self.n < self.total:
                parts.append(f"eta {_clock((self.total - self.n) / rate)}")
        if self._status_postfix:
            parts.append(self._status_postfix)
        print(", ".join(parts), file=sys.stderr, flush=True)
        self._status_lines += 1


def quiet_libraries(*, force: bool = False) -> None:
    """Silence the Hugging Face libraries' bars (model loading, datasets) off-terminal, and always when quiet
    (`force` or `set_quiet`), which also drops their info and warning messages (errors still show).

    Libraries not imported yet are silenced through their environment variables, so quieting imports nothing.
    """
    quiet = force or _quiet
    if on_terminal() and not quiet:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if quiet:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DATASETS_VERBOSITY", "error")
        for name in ("transformers", "datasets", "huggingface_hub", "filelock", "urllib3"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if quiet:
            hf_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        if quiet:
            datasets.utils.logging.set_verbosity_error()
