"""One writer per run directory: an exclusive `fcntl.flock` on `<run>/.saeseeds-lock`, held for the run's life.

The lock file holds the holder's PID (what a refused second writer names). The kernel drops the lock when the
holder's process ends however it ends, so a file left by a killed run is stale and the next writer takes it.
The holder removes the file when it releases the lock; a writer that locked a file just removed this way
finds another inode at the path and tries again. Under torchrun rank 0 holds the lock for the whole job
(saeseeds.training.trainer). Where `fcntl` is missing (Windows) runs are not locked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from saeseeds.errors import CheckpointError
from saeseeds.outputs import committed_step
from saeseeds.run_layout import LOCK_FILE

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

"""The lock file's name inside the run directory (never a sign of a run: a killed writer may leave it)."""
_ATTEMPTS = 5
log = logging.getLogger(__name__)


def lock_path(run_dir: Path) -> Path:
    """`<run>/.saeseeds-lock`."""
    return Path(run_dir) / LOCK_FILE


def holder_pid(run_dir: Path) -> str | None:
    """The PID of a live process holding the run's lock ("?" when it has not written it yet); None when free."""
    path = lock_path(run_dir)
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
        except OSError:  # no locks on this file system: acquire() warns
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def in_use_error(run_dir: Path, pid: str) -> CheckpointError:
    """The one-line refusal of a second writer."""
    return CheckpointError(
        f"{run_dir} is in use by another saeseeds process (PID {pid}); wait for it to end, or stop it, then retry"
    )


def refuse_if_locked(run_dir: Path) -> None:
    """CheckpointError naming the holder's PID when another process holds the run's lock (changes nothing)."""
    pid = holder_pid(run_dir)
    if pid is not None:
        raise in_use_error(run_dir, pid)


class RunLock:
    """The exclusive lock on one run directory; `release()` (idempotent) unlocks it and removes the file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock | None:
        """Lock `run_dir` (which must exist) or raise CheckpointError naming the holder; None without fcntl."""
        if fcntl is None:
            return None
        path = lock_path(run_dir)
        for _ in range(_ATTEMPTS):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides the mode
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise in_use_error(run_dir, pid) from None
            except OSError as err:  # a file system without locks (some network mounts): run unlocked
                os.close(fd)
                log.warning("%s: cannot lock the run directory (%s); nothing stops a second writer", path,
                            err.strerror or err)
                return None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
                return cls(path, fd)
            os.close(fd)  # the holder removed that file as we locked it: lock the one now at the path
        raise CheckpointError(f"{path}: could not take the run's lock after {_ATTEMPTS} attempts; retry")

    def release(self) -> None:
        """Remove the lock file, then unlock (a writer that opened it meanwhile sees the inode changed)."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink(missing_ok=True)
        except OSError:
            pass  # the directory went away or is read-only now: the kernel still drops the lock below
        os.close(self.fd)
        self.fd = -1


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def run_worth_keeping(out: Path) -> bool:
    """Whether a failed train must leave `out` alone: it committed a checkpoint after step 0 (resumable), or
    another live process holds the run's lock (its run, begun while this one started)."""
    return committed_step(out) > 0 or holder_pid(out) is not None
