"""Atomic, umask-respecting writes of files and whole directories, and the one JSON policy (strict, NaN → null).

Readers never see half a file or half a directory: everything is written under a temporary name beside the
target, fsynced, then renamed into place. Unlike `tempfile.mkstemp`/`mkdtemp` (always 0600/0700), the results
get the modes a plain `open()`/`mkdir()` would give (0o666 / 0o777 minus the umask), so colleagues sharing a
cluster can read the outputs. Temporary names end in TEMP_SUFFIX or BACKUP_SUFFIX; `remove_stale_temps`
cleans up after a crashed writer.
"""

from __future__ import annotations

import dataclasses
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

TEMP_SUFFIX = ".saeseeds-tmp"
"""Ends the name of a file or directory still being written."""
BACKUP_SUFFIX = ".saeseeds-old"
"""Ends the name of a replaced directory between the swap and its removal."""

_TEMP_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<token>[0-9a-f]{12})(?P<suffix>" + re.escape(TEMP_SUFFIX) + "|"
    + re.escape(BACKUP_SUFFIX) + r")$"
)
_UMASK_LOCK = threading.Lock()


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


def _temp_path(target: Path, suffix: str) -> Path:
    """A fresh hidden name beside `target`: `.<name>.<12 hex><suffix>`."""
    return target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix}"


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
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # the writer may have recreated the file with other permissions
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
    directory. If the block raises, `tmp` is removed and `path` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(target, TEMP_SUFFIX)
    os.mkdir(tmp, 0o777)
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        follow_umask(tmp)
        fsync_tree(tmp)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
        pass  # the new directory is in place; remove_stale_temps deletes the leftover backup later


def _remove(path: Path) -> None:
    """Delete a file, link or directory tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temps(directory: str | Path, *, min_age_s: float = 0.0) -> list[Path]:
    """Delete temporaries that crashed writers of this module left in `directory`; returns what it touched.

    A backup whose target is missing (a crash between the two renames of `atomic_dir`) is renamed back to the
    target instead of being deleted. Entries younger than `min_age_s` seconds are kept, so a writer still at
    work in `directory` is not disturbed; only names this module creates are considered.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    touched = []
    for entry in sorted(directory.iterdir()):
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if age < min_age_s:
            continue
        target = directory / match["name"]
        if match["suffix"] == BACKUP_SUFFIX and not target.exists() and not target.is_symlink():
            os.rename(entry, target)
        else:
            _remove(entry)
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
    "json_safe",
    "json_text",
    "remove_stale_temps",
]
