"""Fault-injection helpers: snapshot a sandbox tree outside a command's --out, run the CLI, judge the outcome.

The promise under test (docs/design.md): a command changes nothing outside its --out, never prints a traceback,
and refuses bad input with one line on stderr and exit status 2. `Snapshot` records every entry under a root
(type, size, mtime, sha256, link target) except the paths excluded; `changes` names what differs.

    before = snapshot(root, exclude=[out])
    result = run_cli(["compare", str(run), "--out", str(out)])
    assert changes(before, snapshot(root, exclude=[out])) == []
    result.assert_refused("compare", str(out))
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

Entry = tuple[str, int, int, str]
"""(kind 'file' / 'dir' / 'link', size, mtime in ns, sha256 or link target); directories record only their kind
(their mtime changes when --out is created inside them, which is allowed)."""
Snapshot = dict[str, Entry]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _excluded(path: Path, exclude: Sequence[Path]) -> bool:
    return any(path == e or e in path.parents for e in exclude)


def snapshot(root: Path, exclude: Iterable[Path] = ()) -> Snapshot:
    """Every entry under `root` (links not followed), keyed by path relative to `root`, minus `exclude` trees."""
    root = Path(root)
    skip = [Path(os.path.abspath(e)) for e in exclude]
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(os.path.abspath(dirpath))
        for name in [*dirnames, *filenames]:
            path = here / name
            if _excluded(path, skip):
                continue
            rel = str(path.relative_to(os.path.abspath(root)))
            st = path.lstat()
            if path.is_symlink():
                found[rel] = ("link", 0, 0, os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", 0, 0, "")
            else:
                found[rel] = ("file", st.st_size, st.st_mtime_ns, _sha256(path))
        dirnames[:] = [d for d in dirnames if not _excluded(here / d, skip) and not (here / d).is_symlink()]
    return found


def changes(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two snapshots: 'created X', 'removed X', 'changed X'."""
    out = [f"removed {p}" for p in sorted(set(before) - set(after))]
    out += [f"created {p}" for p in sorted(set(after) - set(before))]
    out += [f"changed {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    return out


@dataclass
class CliResult:
    """What a CLI run gave: exit status, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-4000:]}"

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stderr + self.stdout, self.describe()

    def assert_ok(self) -> None:
        self.assert_no_traceback()
        assert self.returncode == 0, self.describe()

    def assert_refused(self, verb: str, *keys: str) -> str:
        """One line `saeseeds <verb>: error: ...` naming every key, exit status 2; returns the line."""
        self.assert_no_traceback()
        assert self.returncode == 2, self.describe()
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.describe()
        assert lines[0].startswith(f"saeseeds {verb}: error: "), self.describe()
        for key in keys:
            assert key in lines[0], f"{key!r} missing\n{self.describe()}"
        return lines[0]


def run_in_process(argv: Sequence[str], capsys) -> CliResult:
    """`saeseeds.cli.main(argv)` in this process (fast: torch is already imported), output captured."""
    from saeseeds.cli import main

    capsys.readouterr()
    status = main(list(argv))
    captured = capsys.readouterr()
    return CliResult(status, captured.out, captured.err)


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: offline, one thread, no display."""
    return os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}


def run_subprocess(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 180,
                   prelude: str = "") -> CliResult:
    """`python -m saeseeds argv` in a fresh process; `prelude` is Python run first (fault injection)."""
    code = f"{prelude}\nimport sys\nfrom saeseeds.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=cli_env(),
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


KILL_AFTER_BACKUP_RENAME = """
import os, signal
from saeseeds.atomic import BACKUP_SUFFIX
_real_rename = os.rename
def _rename_then_die(src, dst, *args, **kwargs):
    _real_rename(src, dst, *args, **kwargs)
    if str(dst).endswith(BACKUP_SUFFIX):  # the old output moved aside, the new one not yet renamed in
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = _rename_then_die
"""
"""Prelude for `run_subprocess`: SIGKILL the process between the two renames of an --overwrite swap."""

KILLED = -signal.SIGKILL
"""The return code of a subprocess killed by SIGKILL."""
