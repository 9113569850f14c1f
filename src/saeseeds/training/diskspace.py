"""A full disk while a run writes, reported as one line naming the file and the bytes it needed.

The writers report a full disk in three shapes: an `OSError` with errno ENOSPC (or EDQUOT, a full quota),
safetensors' `SafetensorError` "... No space left on device (os error 28)", and torch's zip writer's
`RuntimeError` "unexpected pos ..." (its cause, when torch wrote through a Python file, is the OSError).
`disk_full_guard` wraps one write and turns any of them into a `DiskFullError` (the CLI prints its one line,
exit status 2); other errors pass unchanged.
Every write is atomic or part of an uncommitted state set, so what was committed before stays intact.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import Tensor

from saeseeds.errors import SaeseedsError

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_MESSAGES = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")


class DiskFullError(OSError):
    """The file system ran out of space (or quota) while the run wrote a file; what was committed is intact.

    An OSError (errno ENOSPC, `strerror` the one-line message), not a SaeseedsError: the input was fine, and a
    fresh run that hits it keeps its committed state for `--resume` instead of being undone as bad input."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


def nbytes(value: Any) -> int:
    """Bytes of the tensors in a nested dict/list/tuple (what a state or checkpoint file needs, at least)."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 0


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing ancestor); None when unknown."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def is_disk_full(err: BaseException, path: Path, needed: int) -> bool:
    """Whether `err` (or an error it was raised from) says the disk or quota is full; torch's bare
    "unexpected pos" counts when the file system has less free space than the write needs."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_ERRNOS:
            return True
        if any(text in str(seen).lower() for text in FULL_MESSAGES):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, RuntimeError) and "unexpected pos" in str(err):
        free = free_bytes(path)
        return free is not None and free < needed
    return False


@contextmanager
def disk_full_guard(path: Path, needed: int) -> Iterator[None]:
    """Run one write of about `needed` bytes to `path`; a full disk becomes one DiskFullError line."""
    try:
        yield
    except Exception as err:  # OSError, torch's RuntimeError, safetensors' SafetensorError
        if isinstance(err, (SaeseedsError, DiskFullError)) or not is_disk_full(err, path, needed):
            raise
        raise _full(path, needed) from err


def _full(path: Path, needed: int) -> DiskFullError:
    """The one-line error: the file, the bytes it needed and the bytes free; what to do."""
    free = free_bytes(path)
    left = "" if free is None else f", {free:,} free"
    return DiskFullError(
        f"no space left on the device writing {path}: it needs about {needed:,} bytes{left}; the state committed "
        f"before is intact: free some space, then continue with --resume"
    )
