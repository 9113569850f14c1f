"""One logging setup (saeseeds.log): every verb takes --verbose next to --quiet (not both); --verbose shows DEBUG
details on stderr, --quiet leaves only warnings and errors there; results stay on stdout; `import saeseeds`
configures no logging."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from saeseeds import progress
from saeseeds.cli import build_parser, main
from saeseeds.log import reset_logging, setup_logging

pytestmark = pytest.mark.usefixtures("restore_quiet")  # tests/conftest.py

TINY = """
[data]
source = "synthetic"
[synthetic]
d_in = 16
num_features = 48
[train]
seeds = [0, 1]
batch_size = 64
num_tokens = 1280
eval_tokens = 512
device = "cpu"
[[sae]]
architecture = "topk"
num_latents = 32
k = 4
"""


def debug_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("debug +")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verbose")
    (root / "tiny.toml").write_text(TINY)
    return root


def test_every_verb_has_verbose_next_to_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train", "compare", "analyze", "cache", "synthetic", "demo", "study", "pool", "export", "report"} <= set(verbs)
    for name, verb in verbs.items():
        assert "--verbose" in verb._option_string_actions and "-v" in verb._option_string_actions, name
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--quiet", "--verbose"])
        assert exit_info.value.code == 2, name
        captured = capsys.readouterr()
        assert captured.out == "", name
        assert captured.err.count("\n") == 1 and "--verbose" in captured.err and "--quiet" in captured.err, name
        assert "not allowed with" in captured.err, name


@pytest.mark.slow
def test_verbose_train_and_compare_show_debug_details_quiet_shows_no_info(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workdir)
    assert main(["train", "tiny.toml", "--out", "run", "-v"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("trained 2 SAEs") and len(out.splitlines()) == 5  # the result, on stdout, as before
    lines = debug_lines(err)
    assert lines and len(lines) == len(err.splitlines()) and "trained 2 SAEs" not in err
    assert any("commands.train: config" in line and "train.device cpu" in line for line in lines), err
    assert any("training.trainer: device cpu; 2 of 2 SAEs" in line for line in lines), err
    assert any("training.trainer: trained 20 steps in" in line for line in lines), err
    assert any("files: wrote run/run.json (" in line for line in lines), err  # files written, relative as given

    assert main(["compare", "run", "--out", "cmp", "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert "shared fraction" in out and "debug" not in out
    lines = debug_lines(err)
    assert any("align.cross_seed: activations/topk-32: seed0 vs seed1: decoder dense" in line and "MMCS" in line
               for line in lines), err
    assert any("seeds loaded in" in line and "aligned in" in line for line in lines), err
    assert any("commands.compare: device cpu" in line for line in lines), err
    assert any("files: wrote cmp/summary.json (" in line for line in lines), err
    assert len(err.splitlines()) == len(lines)  # off a terminal a short run prints no status line

    # default: status lines (INFO) on stderr, results on stdout, no debug lines
    args = ["analyze", "run", "--out", "an", "--compare", "cmp", "--no-lm-loss", "--n-random", "2", "--n-show", "1"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "seeds analysed in" in err and "evaluation data:" in err and not debug_lines(err)
    assert "activations/topk-32:" in out and "unstable_rarer [reappears]: " in out and "wrote an/analysis.json" in out
    assert "seeds analysed in" not in out

    # --quiet: no INFO lines at all (and, for these verbs, no result print either)
    assert main([*args, "--overwrite", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["compare", "run", "--out", "cmp", "--overwrite", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_setup_logging_is_idempotent_and_levels_follow_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("saeseeds.test")
    setup_logging(logging.INFO)
    setup_logging(logging.INFO)
    assert len(logging.getLogger("saeseeds").handlers) == 2  # the NullHandler and one of ours
    log.info("status line")
    log.debug("hidden")
    log.warning("careful")
    assert capsys.readouterr() == ("", "status line\nwarning: careful\n")
    setup_logging(logging.WARNING)
    log.info("status line")
    log.error("broken")
    assert capsys.readouterr().err == "error: broken\n" and progress.is_quiet()
    setup_logging(logging.DEBUG)
    log.debug("detail")
    assert capsys.readouterr().err.startswith("debug +") and not progress.is_quiet()
    reset_logging()
    log.info("library use: nothing")
    assert capsys.readouterr() == ("", "")


def test_importing_saeseeds_configures_no_logging() -> None:
    code = (
        "import logging\n"
        "root = logging.getLogger()\n"
        "before = (list(root.handlers), root.level)\n"
        "import saeseeds as ss\n"
        "import saeseeds.api.comparison, saeseeds.cli\n"
        "ss.SharingRule\n"
        "assert (list(root.handlers), root.level) == before, (root.handlers, root.level)\n"
        "pkg = logging.getLogger('saeseeds')\n"
        "assert [type(h).__name__ for h in pkg.handlers] == ['NullHandler'], pkg.handlers\n"
        "assert pkg.level == logging.NOTSET and pkg.propagate\n"
        "logging.getLogger('saeseeds.api.comparison').warning('dropped: no configuration')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "" and proc.stderr == ""
