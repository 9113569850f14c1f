"""Where numba keeps the compiled kernels of saeseeds, so they compile once per machine, not once per process.

The kernels use `@njit(cache=True)`. numba writes the cache next to the source (`__pycache__`) when that is
writable; an installed package in a read-only site-packages (a container image, a shared environment) would
otherwise fall back to numba's own user directory, or, where that is unwritable too, compile on every run (about
15 s of CPU for the alignment kernels). `configure()` runs before the kernels are defined: when the package directory
is not writable and the user set no `NUMBA_CACHE_DIR`, it points numba at `<user cache dir>/saeseeds/numba`
(`$XDG_CACHE_HOME` or `~/.cache`), or at a per-user temporary directory when even that cannot be written.
`kernel_state` says what calling given kernels would cost first (nothing, a load, a compile): the alignment's
choice between its dense and sparse solvers uses it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ENV = "NUMBA_CACHE_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent


def _writable(path: Path) -> bool:
    """True when files can be created in `path` (or in its nearest existing parent, which would hold it)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def saeseeds_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/saeseeds`, or `~/.cache/saeseeds`: the user's cache of saeseeds (numba kernels, screen
    timings of `saeseeds.align.screen_choice`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "saeseeds"


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/saeseeds/numba`, or `~/.cache/saeseeds/numba`."""
    return saeseeds_cache_dir() / "numba"


def choose_cache_dir(package_dir: Path = PACKAGE_DIR,
                     writable: Callable[[Path], bool] = _writable) -> Path | None:
    """The directory numba should cache into, or None to keep numba's in-tree cache (or the user's own
    `NUMBA_CACHE_DIR`)."""
    if os.environ.get(ENV):
        return None
    if writable(package_dir / "align" / "__pycache__"):
        return None
    for candidate in (user_cache_dir(), Path(tempfile.gettempdir()) / f"saeseeds-numba-{_user_id()}"):
        if writable(candidate):
            return candidate
    return None


def _user_id() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def configure(package_dir: Path = PACKAGE_DIR, writable: Callable[[Path], bool] = _writable) -> Path | None:
    """Set numba's cache directory if the package's own is not writable (see the module docstring); returns
    the directory set, or None when nothing was changed. Call before any `@njit(cache=True)` runs."""
    chosen = choose_cache_dir(package_dir, writable)
    if chosen is None:
        return None
    chosen.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(chosen)
    try:  # numba reads the variable when it is imported: update its config if that already happened
        from numba.core import config

        config.CACHE_DIR = str(chosen)
    except ImportError:
        pass
    return chosen


def kernel_state(kernels: Iterable[Any]) -> str:
    """How much calling every numba kernel (dispatcher) in `kernels` would cost first: "loaded" (compiled or
    loaded in this process: nothing), "cached" (numba's on-disk cache has them: a load, well under a second)
    or "cold" (a compile: seconds each). A stale cache entry, after the source changed, counts as cached: this
    is only a cost estimate."""
    state = "loaded"
    for kernel in kernels:
        if kernel.signatures:
            continue
        try:
            index = Path(kernel._cache._cache_file._index_path)  # numba keeps no public name for it
        except AttributeError:  # pragma: no cover - a numba without that cache layout: assume cold
            return "cold"
        if not index.exists():
            return "cold"
        state = "cached"
    return state


configure()
