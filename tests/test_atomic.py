"""Atomic writes: modes follow the umask, directories swap in whole or not at all, JSON is strict (NaN → null)."""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from saeseeds import atomic
from saeseeds.atomic import (
    BACKUP_SUFFIX,
    TEMP_SUFFIX,
    atomic_dir,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    atomic_write_text,
    current_umask,
    json_text,
    remove_stale_temps,
)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    """Permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    """Names of temporaries of saeseeds.atomic in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX)))


def write_all_kinds(directory: Path) -> list[Path]:
    """One file through each file writer; the last writer recreates its file with mode 0600."""

    def recreate_private(tmp: Path) -> None:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    atomic_write_bytes(directory / "a.bin", b"\x00\x01")
    atomic_write_text(directory / "b.txt", "hello")
    atomic_write_json(directory / "c.json", {"x": 1})
    atomic_write_npz(directory / "d.npz", x=np.arange(3))
    atomic_write(directory / "e.dat", recreate_private)
    return [directory / n for n in ("a.bin", "b.txt", "c.json", "d.npz", "e.dat")]


@pytest.mark.parametrize(("mask", "want_file", "want_dir"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_modes_follow_the_umask(tmp_path: Path, umask: Callable[[int], int], mask: int, want_file: int, want_dir: int) -> None:
    """Files get 0o666 and directories 0o777 minus the umask, not mkstemp's 0600 / mkdtemp's 0700."""
    umask(mask)
    assert current_umask() == mask
    assert current_umask() == mask  # reading it does not change it
    for path in write_all_kinds(tmp_path):
        assert mode(path) == want_file, path.name
    with atomic_dir(tmp_path / "ckpt") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
        atomic_write_json(tmp / "cfg.json", {"k": 1})
    assert mode(tmp_path / "ckpt") == want_dir
    assert mode(tmp_path / "ckpt" / "weights.bin") == want_file
    assert mode(tmp_path / "ckpt" / "cfg.json") == want_file
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "ckpt") == []


def test_umask_fallback_without_proc(tmp_path: Path, umask: Callable[[int], int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc the umask is read by setting and restoring it, and is left as it was."""
    umask(0o027)

    def no_proc(*args: object, **kwargs: object) -> None:
        raise OSError("no /proc")

    monkeypatch.setattr(atomic, "open", no_proc, raising=False)
    assert current_umask() == 0o027
    assert current_umask() == 0o027
    monkeypatch.undo()
    atomic_write_text(tmp_path / "f", "x")
    assert mode(tmp_path / "f") == 0o640


def test_failed_file_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """A writer that raises leaves the previous content and no temporary behind."""
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"v": 1}
    assert leftovers(tmp_path) == []


def test_npz_lands_at_exactly_the_path_and_round_trips(tmp_path: Path) -> None:
    """np.savez appends '.npz' to names without it; the writer must not, and must compress."""
    target = tmp_path / "table"
    big = np.zeros(100_000)
    atomic_write_npz(target, path=np.arange(4), zeros=big)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]
    with np.load(target) as data:
        np.testing.assert_array_equal(data["path"], np.arange(4))
        np.testing.assert_array_equal(data["zeros"], big)
    assert target.stat().st_size < big.nbytes / 10


def test_atomic_dir_replaces_an_existing_directory(tmp_path: Path) -> None:
    """The new directory takes the name; nothing of the old one (or any temporary) remains."""
    target = tmp_path / "sae"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and tmp.is_dir()
        assert (target / "old.bin").exists()  # the old directory is untouched while the new one is built
        (tmp / "sub").mkdir()
        (tmp / "sub" / "new.bin").write_bytes(b"new")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["sub", "sub/new.bin"]
    assert (target / "sub" / "new.bin").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_atomic_dir_creates_a_missing_target_and_parents(tmp_path: Path) -> None:
    """No old directory: the new one is simply renamed in (parents created)."""
    target = tmp_path / "a" / "b"
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("1")
    assert (target / "f").read_text() == "1"
    assert leftovers(tmp_path / "a") == []


def test_failure_inside_atomic_dir_leaves_the_old_directory(tmp_path: Path) -> None:
    """An exception in the block removes the half-built directory and does not touch the old one."""
    target = tmp_path / "sae"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "new.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["old.bin"]
    assert (target / "old.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_failed_swap_restores_the_old_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If renaming the new directory in fails after the old one was moved aside, the old one is put back."""
    target = tmp_path / "sae"
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    real_rename = os.rename
    calls = []

    def flaky_rename(src: str | Path, dst: str | Path) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # 1: old -> backup, 2: new -> target
            raise OSError("rename failed")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="rename failed"), atomic_dir(target) as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    monkeypatch.undo()
    assert calls[0][0] == "sae" and calls[0][1].endswith(BACKUP_SUFFIX)
    assert (target / "old.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_remove_stale_temps(tmp_path: Path) -> None:
    """Stale temporaries go, an orphaned backup is restored, other names and fresh temporaries stay."""
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / ".hidden").write_text("keep")
    stale_file = tmp_path / f".run.json.0123456789ab{TEMP_SUFFIX}"
    stale_file.write_text("half")
    stale_dir = tmp_path / f".sae.00112233aabb{TEMP_SUFFIX}"
    stale_dir.mkdir()
    (stale_dir / "w").write_text("half")
    orphan = tmp_path / f".ckpt.aaaaaaaaaaaa{BACKUP_SUFFIX}"  # crash between the two renames: ckpt missing
    orphan.mkdir()
    (orphan / "w").write_text("only copy")
    (tmp_path / "done").mkdir()
    replaced = tmp_path / f".done.bbbbbbbbbbbb{BACKUP_SUFFIX}"
    replaced.mkdir()

    assert remove_stale_temps(tmp_path, min_age_s=3600) == []  # all of them are fresh
    touched = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in touched) == sorted(p.name for p in (stale_file, stale_dir, orphan, replaced))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "ckpt", "done", "run.json"]
    assert (tmp_path / "ckpt" / "w").read_text() == "only copy"
    assert remove_stale_temps(tmp_path / "missing") == []


@dataclass
class _Record:
    """A dataclass with awkward fields for the JSON walk."""

    path: Path
    score: float
    arr: np.ndarray


def test_json_is_strict_and_nan_becomes_null(tmp_path: Path) -> None:
    """NaN/±inf anywhere (floats, numpy, torch, dataclasses) become null; the file parses as strict JSON."""
    obj = {
        "nan": float("nan"),
        "inf": math.inf,
        "np_scalar": np.float32("-inf"),
        "np_int": np.int64(7),
        "array": np.array([1.0, np.nan, 2.5]),
        "tensor": torch.tensor([[0.5, float("inf")]]),
        "tensor0": torch.tensor(3),
        "bf16": torch.tensor([1.5], dtype=torch.bfloat16),
        "nested": [(1, float("nan")), {np.int64(2): "two"}],
        "record": _Record(Path("/x/y"), float("nan"), np.array([np.inf])),
        "set": {3, 1},
    }
    path = tmp_path / "o.json"
    atomic_write_json(path, obj)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")

    def reject(constant: str) -> None:
        raise ValueError(f"non-strict JSON constant {constant}")

    loaded = json.loads(text, parse_constant=reject)
    assert loaded == {
        "nan": None,
        "inf": None,
        "np_scalar": None,
        "np_int": 7,
        "array": [1.0, None, 2.5],
        "tensor": [[0.5, None]],
        "tensor0": 3,
        "bf16": [1.5],
        "nested": [[1, None], {"2": "two"}],
        "record": {"path": "/x/y", "score": None, "arr": [None]},
        "set": [1, 3],
    }


def test_json_rejects_unknown_objects() -> None:
    """Anything without a JSON meaning is a TypeError naming its type, never a silent repr."""
    with pytest.raises(TypeError, match="object"):
        json_text({"x": object()})


# --------------------------------------------------------------------------------------------
# long names, killed writers, live writers (reliability campaign 3: B59, D10)


def test_temporaries_of_a_long_name_stay_under_name_max(tmp_path: Path) -> None:
    """A 250-character target: the temporary beside it is shortened (it exceeded NAME_MAX: ENAMETOOLONG)."""
    name = "n" * 250
    atomic_write_text(tmp_path / name, "x")
    with atomic_dir(tmp_path / ("d" * 250)) as tmp:
        assert len(os.fsencode(tmp.name)) < 255
        (tmp / "f").write_text("1")
    with atomic_dir(tmp_path / ("d" * 250)) as tmp:  # replacing it goes through a backup name too
        (tmp / "g").write_text("2")
    assert (tmp_path / name).read_text() == "x"
    assert sorted(p.name for p in (tmp_path / ("d" * 250)).iterdir()) == ["g"]
    assert leftovers(tmp_path) == []
    assert atomic.short_name("é" * 200) != atomic.short_name("é" * 199 + "e")  # a hash keeps names apart


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from saeseeds import atomic
real = os.rename
def rename(src, dst):
    real(src, dst)
    if str(dst).endswith(atomic.BACKUP_SUFFIX):
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
with atomic.atomic_dir(sys.argv[1]) as tmp:
    (tmp / "new.bin").write_bytes(b"new")
"""


@pytest.mark.parametrize("name", ["out", "o" * 250])
def test_recover_target_restores_the_backup_after_a_kill_between_the_renames(tmp_path: Path, name: str) -> None:
    """A real SIGKILL after the old directory went to its backup name: `recover_target` renames it back and
    removes the new one's temporary (nothing did: --out stayed missing)."""
    import subprocess
    import sys

    target = tmp_path / name
    target.mkdir()
    (target / "old.bin").write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(target)], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    assert not target.exists() and len(leftovers(tmp_path)) == 2
    restored, removed = atomic.recover_target(target)
    assert restored is not None and restored.name.endswith(BACKUP_SUFFIX)
    assert [p.name.endswith(TEMP_SUFFIX) for p in removed] == [True]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert (target / "old.bin").read_bytes() == b"old"
    assert atomic.recover_target(target) == (None, [])


def test_recover_target_removes_stale_temporaries_of_that_target_only(tmp_path: Path) -> None:
    """A killed build leaves `.out.<hex>.saeseeds-tmp`: removed; another target's temporaries are not."""
    (tmp_path / "out").mkdir()
    mine = tmp_path / f".out.0123456789ab{TEMP_SUFFIX}"
    mine.mkdir()
    other = tmp_path / f".outer.0123456789ab{TEMP_SUFFIX}"
    other.mkdir()
    assert atomic.recover_target(tmp_path / "out") == (None, [mine])
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "out"]


def test_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    """While a writer builds or swaps, its temporaries are locked: neither cleanup touches them."""
    target = tmp_path / "out"
    target.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("1")
        assert atomic.is_live(tmp)
        assert atomic.recover_target(target) == (None, [])
        assert remove_stale_temps(tmp_path) == []
        assert tmp.is_dir()
    assert not atomic.is_live(target) and (target / "f").read_text() == "1"
