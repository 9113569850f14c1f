"""CPU threads for torch and numba during one command (`--threads N` on every verb), restored afterwards.

Both libraries default to one thread per core. On a machine shared with other jobs those threads spin waiting
on each other (a demo at load 10 took 30 min with the defaults against 5 min with one thread), and nothing else
in saeseeds sets the count, so the CLI applies the flag here, once, and in-process callers (tests, notebooks
calling `saeseeds.cli.main`) get their own settings back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from saeseeds.errors import ConfigError

NUMBA_ENV = "NUMBA_NUM_THREADS"


AUTO = "auto"
"""`--threads auto`: as many threads as this process's cores minus what other jobs keep busy (`fair_share`)."""


def check_threads(n: int, flag: str = "--threads") -> int:
    """`n` when it is a thread count (≥ 0, 0 = the libraries' default); ConfigError naming `flag` otherwise."""
    if n < 0:
        raise ConfigError(f"{flag}: {n} must be ≥ 0 (0: the default, one thread per core; or auto)")
    return n


def fair_share(cores: int | None = None, load: float | None = None) -> tuple[int, str]:
    """Threads that do not oversubscribe: this process's cores less the 1-minute load of other jobs (≥ 1),
    and the reason in words. Oversubscribed torch threads spin on each other (a 2-core demo at load 2 ran
    ~3x slower with two threads than with one)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = max(1, min(cores, cores - round(load)))
    return n, f"{cores} cores, 1-minute load {load:.1f} from other jobs"


def resolve_threads(value: int | str) -> tuple[int, str]:
    """The thread count a --threads value (a count ≥ 0 or `auto`) means now, and why (empty for a count)."""
    text = str(value).strip().lower()
    if text == AUTO:
        n, why = fair_share()
        return n, f"auto: {why}"
    if not text.lstrip("-").isdigit():
        raise ConfigError(f"--threads: {value!r} is not a thread count (an integer ≥ 0, 0: one per core, or auto)")
    return check_threads(int(text)), ""


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch and numba CPU threads (0: leave the defaults alone)."""
    if n <= 0:
        yield
        return
    import torch

    torch_before = torch.get_num_threads()
    env_before = os.environ.get(NUMBA_ENV)
    numba_before = None
    torch.set_num_threads(n)
    if "numba" in sys.modules:  # already imported: its pool is sized, so ask for at most that many
        import numba

        numba_before = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:  # read when numba is imported during the command
        os.environ[NUMBA_ENV] = str(n)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        if numba_before is not None:
            import numba

            numba.set_num_threads(numba_before)
        elif env_before is None:
            os.environ.pop(NUMBA_ENV, None)
        else:
            os.environ[NUMBA_ENV] = env_before
