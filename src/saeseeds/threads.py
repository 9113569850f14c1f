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


def check_threads(n: int, flag: str = "--threads") -> int:
    """`n` when it is a thread count (≥ 0, 0 = the libraries' default); ConfigError naming `flag` otherwise."""
    if n < 0:
        raise ConfigError(f"{flag}: {n} must be ≥ 0 (0: the default, one thread per core)")
    return n


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
