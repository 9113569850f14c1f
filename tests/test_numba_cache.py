"""numba's on-disk cache falls back to a writable user directory when the installed package is read-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from saeseeds import numba_cache


def test_in_tree_cache_is_kept_when_the_package_is_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(numba_cache.ENV, raising=False)
    assert numba_cache.choose_cache_dir(Path("/pkg"), writable=lambda p: True) is None


def test_read_only_package_falls_back_to_user_then_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(numba_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    package = tmp_path / "site-packages" / "saeseeds"
    assert numba_cache.choose_cache_dir(package, writable=lambda p: not str(p).startswith(str(package))) == (
        tmp_path / "xdg" / "saeseeds" / "numba")
    only_tmp = numba_cache.choose_cache_dir(package, writable=lambda p: "saeseeds-numba-" in p.name)
    assert only_tmp is not None and only_tmp.name.startswith("saeseeds-numba-")
    monkeypatch.setenv(numba_cache.ENV, str(tmp_path / "mine"))  # the user's own choice wins
    assert numba_cache.choose_cache_dir(package, writable=lambda p: False) is None


SCRIPT = """
import sys
from pathlib import Path
from saeseeds import numba_cache
chosen = numba_cache.configure(Path(sys.argv[1]), writable=lambda p: not str(p).startswith(sys.argv[1]))
sys.path.insert(0, sys.argv[2])
import kernel
print(chosen, kernel.plus_one(41))
"""


def test_kernels_compile_once_into_the_fallback_dir(tmp_path: Path) -> None:
    # a kernel module in a "read-only" tree: the compiled code lands in the user cache dir, and a second
    # process loads it from there instead of compiling again
    src = tmp_path / "ro"
    src.mkdir()
    (src / "kernel.py").write_text("from numba import njit\n\n@njit(cache=True)\ndef plus_one(x):\n    return x + 1\n")
    env = {k: v for k, v in os.environ.items() if k != numba_cache.ENV} | {"XDG_CACHE_HOME": str(tmp_path / "xdg"),
                                                                          "NUMBA_DEBUG_CACHE": "1"}
    cache = tmp_path / "xdg" / "saeseeds" / "numba"
    runs = [subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(src)], env=env, capture_output=True,
                           text=True, timeout=120) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == f"{cache} 42"
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
    assert "[cache] data saved" in runs[0].stdout and "[cache] data loaded" in runs[1].stdout
