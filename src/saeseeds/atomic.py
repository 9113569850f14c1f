"""Atomic, umask-respecting writes of files and whole directories, and the one JSON policy (strict, NaN → null).

Readers never see half a file or half a directory: everything is written under a temporary name beside the
target, fsynced, then renamed into place. Unlike `tempfile.mkstemp`/`mkdtemp` (always 0600/0700), the results
get the modes a plain `open()`/`mkdir()` would give (0o666 / 0o777 minus the umask), so colleagues sharing a
cluster can read the outputs. Temporary names end in TEMP_SUFFIX or BACKUP_SUFFIX and stay within NAME_MAX
however long the target's name is; a writer holds an exclusive `flock` on each of its temporaries for as long as it
works on it, so `remove_stale_temps` (a whole directory) and `recover_target` (one target, e.g. a verb's --out) can
tell the leftovers of a killed writer from the work of a live one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: liveness falls back to the age of a temporary
    fcntl = None  # type: ignore[assignment]

TEMP_SUFFIX = ".saeseeds-tmp"
"""Ends the name of a file or directory still being written."""
BACKUP_SUFFIX = ".saeseeds-old"
"""Ends the name of a replaced directory between the swap and its removal."""

_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{12})(?P<suffix>" + re.escape(TEMP_SUFFIX) + "|"
    + re.escape(BACKUP_SUFFIX) + r")$"
)
_UMASK_LOCK = threading.Lock()
NAME_BYTES = 200
"""Longest target name (UTF-8 bytes) used as is inside a temporary name; longer ones are shortened (`short_name`)
so `.<name>.<12 hex><suffix>` stays under the 255-byte NAME_MAX of common file systems."""
_HASH_CHARS = 12
LIVE_WITHOUT_LOCKS_S = 60.0
"""Where `flock` is unsupported (some network file systems): a temporary younger than this counts as live."""


# --------------------------------------------------------------------------------------------
# modes and names


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc), else under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # fallback: os.umask can only be read by setting it; keep the window tiny
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    """Mode of a new file under the current umask (what `open(path, 'w')` would give)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """Mode of a new directory under the current umask (what `mkdir` would give)."""
    return 0o777 & ~current_umask()


def short_name(name: str) -> str:
    """`name` as temporary names embed it: unchanged up to NAME_BYTES bytes, else its start plus a hash of all of it."""
    raw = os.fsencode(name)
    if len(raw) <= NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    head = raw[: NAME_BYTES - _HASH_CHARS - 1].decode("utf-8", errors="ignore")
    return f"{head}~{digest}"


def _temp_path(target: Path, suffix: str) -> Path:
    """A fresh hidden name beside `target`: `.<name>.<12 hex><suffix>` (a long name shortened by `short_name`)."""
    return target.parent / f".{short_name(target.name)}.{secrets.token_hex(6)}{suffix}"


# --------------------------------------------------------------------------------------------
# liveness: a writer locks its temporaries


def _lock(path: Path) -> int | None:
    """An open descriptor of `path` holding an exclusive flock (released when closed or the process dies)."""
    if fcntl is None:
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    """Release a lock taken by `_lock`."""
    if fd is not None:
        os.close(fd)


def is_live(path: Path) -> bool:
    """True while a live process holds `path` (a temporary of this module) locked; without flock: while it is young."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return False
    except OSError:
        return _young(path)
    try:
        if fcntl is None:
            return _young(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return _young(path)
        return False
    finally:
        os.close(fd)


def _young(path: Path) -> bool:
    """Modified within LIVE_WITHOUT_LOCKS_S seconds."""
    try:
        return time.time() - path.lstat().st_mtime < LIVE_WITHOUT_LOCKS_S
    except OSError:
        return False


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (directories: best effort, some file systems refuse)."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# files


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it onto `path` so readers never see half a file.

    `tmp_path` already exists (empty) beside `path`; the result gets mode 0o666 minus the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path, TEMP_SUFFIX)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    lock = _lock(tmp)  # marks the temporary as a live writer's
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # the writer may have recreated the file with other permissions
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _unlock(lock)
    fsync_path(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_npz(path: str | Path, /, **arrays: Any) -> None:
    """Write `arrays` (name → array-like) as a compressed .npz to exactly `path`, atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append '.npz' to a path
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


# --------------------------------------------------------------------------------------------
# JSON


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON data: NaN/±inf → None; numpy/torch scalars and arrays, dataclasses, Paths converted.

    Tuples and sets become lists (sets sorted); mapping keys that are not JSON keys become strings.
    Raises TypeError naming the type of anything else.
    """
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {_json_key(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((json_safe(v) for v in obj), key=repr)
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: json_safe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (np.generic, np.ndarray)):
        return json_safe(obj.tolist())
    if _is_tensor(obj):
        return json_safe(obj.detach().cpu().tolist())
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _json_key(key: Any) -> str | int | float | bool | None:
    """A mapping key json.dumps accepts (numpy scalars unwrapped, anything else as str)."""
    if isinstance(key, np.generic):
        key = key.item()
    if key is None or isinstance(key, (str, int, bool)):
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(key)
    return str(key)


def _is_tensor(obj: Any) -> bool:
    """True for a torch tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def json_text(obj: Any, *, indent: int | None = 2) -> str:
    """Strict JSON text of `obj` (see `json_safe`), ending in a newline; never emits NaN or Infinity."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write `obj` as strict JSON (NaN/±inf → null) to `path` atomically."""
    atomic_write_text(path, json_text(obj, indent=indent))


# --------------------------------------------------------------------------------------------
# directories


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a whole directory, then swap it in for `path`: `with atomic_dir(target) as tmp: <write into tmp>`.

    `tmp` is a fresh empty directory beside `path` (mode 0o777 minus the umask). When the block ends normally its
    files get the umask's modes (some writers, e.g. safetensors, create files 0600), are fsynced, and it replaces
    `path` (an existing directory is renamed to a backup name, the new one is
    renamed in, then the backup is removed), so `path` is always either the complete old or the complete new
    directory. If the block raises, `tmp` is removed and `path` is left untouched. A kill leaves at worst a
    temporary or, between the two renames, `path` missing and its backup beside it: `recover_target(path)` (run
    by every verb on its --out) puts that backup back and removes the temporaries.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(target, TEMP_SUFFIX)
    os.mkdir(tmp, 0o777)
    lock = _lock(tmp)  # held through the swap: the lock follows the directory when it is renamed in
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        follow_umask(tmp)
        fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _unlock(lock)


def follow_umask(root: Path) -> None:
    """Give every file under `root` mode 0o666 and every directory 0o777, minus the umask (no symlinks followed)."""
    files, dirs = file_mode(), dir_mode()
    for dirpath, _dirs, names in os.walk(root):
        os.chmod(dirpath, dirs)
        for name in names:
            file = Path(dirpath) / name
            if file.is_file() and not file.is_symlink():
                os.chmod(file, files)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under `root` (the directories last, so their entries are durable)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            file = Path(dirpath) / name
            if file.is_file() and not file.is_symlink():
                fsync_path(file)
        fsync_path(Path(dirpath))


def _swap_in(new: Path, target: Path) -> None:
    """Rename `new` onto `target`; an existing target goes to a backup name first and is removed after."""
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        fsync_path(target.parent)
        return
    backup = _temp_path(target, BACKUP_SUFFIX)
    lock = _lock(target)  # the backup stays marked as this writer's until it is removed
    try:
        os.rename(target, backup)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(backup, target)
            raise
        fsync_path(target.parent)
        try:
            _remove(backup)
        except OSError:
            pass  # the new directory is in place; recover_target / remove_stale_temps delete the backup later
    finally:
        _unlock(lock)


def _remove(path: Path) -> None:
    """Delete a file, link or directory tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    """True for anything at `path`, a dangling link included."""
    return path.exists() or path.is_symlink()


def temps_of(target: str | Path) -> list[Path]:
    """The temporaries and backups of this module that belong to `target` (beside it), oldest first."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    mine = short_name(target.name)
    found = []
    for entry in target.parent.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match is not None and match["name"] == mine:
            found.append(entry)
    return sorted(found, key=_mtime)


def _mtime(path: Path) -> float:
    """Modification time, 0 when the entry vanished meanwhile."""
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def recover_target(target: str | Path) -> tuple[Path | None, list[Path]]:
    """Undo what killed writers of `target` left beside it: (the backup restored as `target`, the entries removed).

    When `target` is missing and a backup of it exists (a kill between the two renames of `atomic_dir`'s swap),
    the newest backup is renamed back, so the old output is there again as if the interrupted run never started;
    every other backup and temporary of `target` is deleted. Nothing is touched while any of them is held by a
    live writer (a process working on `target` now).
    """
    target = Path(target)
    entries = temps_of(target)
    if not entries or any(is_live(e) for e in entries):
        return None, []
    restored = None
    backups = [e for e in entries if e.name.endswith(BACKUP_SUFFIX)]
    if backups and not _exists(target):
        try:
            os.rename(backups[-1], target)
            restored = backups[-1]
            fsync_path(target.parent)
        except FileNotFoundError:
            pass  # another process restored it first
    removed = []
    for entry in entries:
        if entry != restored and _exists(entry):
            _remove_quietly(entry)
            removed.append(entry)
    return restored, removed


def _remove_quietly(path: Path) -> None:
    """Delete a leftover; another process removing it at the same time is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def remove_stale_temps(directory: str | Path, *, min_age_s: float = 0.0) -> list[Path]:
    """Delete temporaries that crashed writers of this module left in `directory`; returns what it touched.

    A backup whose target is missing (a crash between the two renames of `atomic_dir`) is renamed back to the
    target instead of being deleted (a backup of a shortened long name whose target cannot be told is left for
    `recover_target`). Entries held by a live writer (`is_live`) or younger than `min_age_s` seconds are kept;
    only names this module creates are considered.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    touched = []
    entries = sorted(directory.iterdir())
    by_short = {short_name(e.name): e for e in entries if not _TEMP_NAME.match(e.name)}
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age_s or is_live(entry):
            continue
        target = by_short.get(match["name"])
        if target is None and short_name(match["name"]) == match["name"]:
            target = directory / match["name"]
        if match["suffix"] == BACKUP_SUFFIX and (target is None or not _exists(target)):
            if target is None:
                continue  # a shortened name whose target is gone: only recover_target(target) knows it
            os.rename(entry, target)
            by_short[match["name"]] = target
        else:
            _remove_quietly(entry)
        touched.append(entry)
    return touched


__all__ = [
    "BACKUP_SUFFIX",
    "TEMP_SUFFIX",
    "atomic_dir",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_write_text",
    "current_umask",
    "dir_mode",
    "file_mode",
    "is_live",
    "json_safe",
    "json_text",
    "recover_target",
    "remove_stale_temps",
    "short_name",
    "temps_of",
]
