"""The console script freezes its import-time objects; in-process callers of `cli.main` are left alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from saeseeds.cli import main
from saeseeds.startup import import_frozen

FRESH = """
import gc, sys
from saeseeds.startup import import_frozen
assert "fractions" not in sys.modules and gc.get_freeze_count() == 0
import_frozen("fractions")
print("fractions" in sys.modules, gc.get_freeze_count() > 0, gc.isenabled())
"""

ENTRY = """
import atexit, gc, sys
sys.argv = ["saeseeds", "compare", sys.argv[1], sys.argv[1], "--out", sys.argv[2]]
atexit.register(lambda: print("torch" in sys.modules, gc.get_freeze_count() > 0, gc.isenabled()))
from saeseeds.cli import entry
entry()
"""


def test_import_frozen_in_a_fresh_process_freezes_and_keeps_the_collector_on() -> None:
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True", "True"]


def test_import_frozen_of_an_imported_module_freezes_nothing() -> None:
    before = gc.get_freeze_count()
    import_frozen("torch")  # imported by this test process already
    assert gc.get_freeze_count() == before


def test_console_entry_freezes_but_main_in_process_does_not(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-sae")
    before = gc.get_freeze_count()
    assert main(["compare", missing, missing, "--out", str(tmp_path / "a"), "--quiet"]) == 2
    assert gc.get_freeze_count() == before and gc.isenabled()
    out = subprocess.run([sys.executable, "-c", ENTRY, missing, str(tmp_path / "b")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.count("\n") == 1 and "no-such-sae" in out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


VERSION = """
import atexit, sys
sys.argv = ["saeseeds", sys.argv[1]]
atexit.register(lambda: print("torch" in sys.modules))
from saeseeds.cli import entry
entry()
"""


def test_console_help_and_version_import_no_torch() -> None:
    for flag in ("--version", "--help"):
        out = subprocess.run([sys.executable, "-c", VERSION, flag], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.splitlines()[-1] == "False", (flag, out.stdout[-500:])
