"""The console script's start and exit without the garbage collector walking objects that live until exit.

Importing torch (and after it scipy and matplotlib) creates millions of objects that live as long as the
process. With the collector on, CPython walks them again and again while later imports create more (~0.35 s)
and once more at interpreter exit (~0.4 s): a sixth of a small `saeseeds compare`. `gc.freeze()` exists for
exactly such objects; it moves them out of every later collection. Only the console script does this: an
in-process caller (a test, a notebook) already holds objects of its own, and freezing those would keep their
garbage alive.
"""

from __future__ import annotations

import gc
import importlib
import sys


def import_frozen(module: str = "torch") -> None:
    """Import `module` with the collector off, then freeze every object alive (once: a no-op if imported)."""
    if module in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        importlib.import_module(module)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def freeze_before_exit() -> None:
    """Spare the exit-time collection the walk over everything still alive: the process ends next (finalizers
    of objects in reference cycles then do not run; saeseeds closes every file it writes before this)."""
    gc.freeze()
