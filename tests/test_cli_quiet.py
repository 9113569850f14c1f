"""Every verb takes the same --quiet; quiet commands print only results/errors, even on a terminal with an LM;
off a terminal progress is a rare one-line status whose size does not grow with the step count."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import saeseeds
from saeseeds import progress
from saeseeds.cli import build_parser, main

HOOK = "transformer.h.1.mlp"


class FakeTerminal(io.StringIO):
    """A captured stream that says it is a terminal, so bars and library loading bars are drawn into it."""

    def isatty(self) -> bool:
        return True


def run_on_terminal(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, str, str]:
    out, err = FakeTerminal(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    try:
        rc = main(argv)
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    return rc, out.getvalue(), err.getvalue()


def test_every_verb_has_quiet_and_no_prefix_matching() -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"train", "compare", "analyze", "cache", "synthetic", "demo"} <= set(verbs)
    for name, verb in verbs.items():
        assert "--quiet" in verb._option_string_actions, name
        assert verb.allow_abbrev is False, name
    args = parser.parse_args(["demo", "--quiet"])
    assert args.quiet is True
    with pytest.raises(SystemExit):  # `--no-progres` is no longer read as `--no-progress`
        parser.parse_args(["demo", "--no-progres"])


@pytest.fixture(scope="module")
def lm_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.tiny_lm import build_tiny_causal_lm

    root = tmp_path_factory.mktemp("quiet")
    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(40)]
    docs = [" ".join(words[i] for i in torch.randint(0, 40, (30,), generator=g).tolist()) for _ in range(120)]
    (root / "corpus.txt").write_text("\n".join(docs))
    build_tiny_causal_lm(root / "lm", docs, d_model=16, n_layer=2)
    cfg = root / "lm.toml"
    cfg.write_text(
        f'[data]\nsource = "lm"\n[lm]\nmodel = "{root / "lm"}"\nhookpoints = ["{HOOK}"]\n'
        f'dataset = "{root / "corpus.txt"}"\nctx_len = 24\neval_chunks = 8\n'
        "[train]\nseeds = [0, 1]\nbatch_size = 128\nnum_tokens = 1280\neval_tokens = 256\ncheckpoint_every = 100\n"
        '[[sae]]\narchitecture = "topk"\nnum_latents = 32\nk = 4\n'
    )
    return cfg


def test_quiet_verbs_print_only_results_on_a_terminal(
    lm_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_quiet: None
) -> None:
    rc, out, err = run_on_terminal(monkeypatch, ["train", str(lm_config), "--out", str(tmp_path / "run"), "-q"])
    assert rc == 0 and err == ""
    lines = out.splitlines()  # the result table, then LM loss recovered (the tiny LM is causal)
    assert lines[0].startswith("trained 2 SAEs") and len(lines) == 6 and "loss recovered" in lines[-1]
    assert progress.is_quiet()
    progress.set_quiet(False)

    rc, out, err = run_on_terminal(monkeypatch, ["cache", str(lm_config), "--out", str(tmp_path / "cache"),
                                                 "--quiet"])
    assert rc == 0 and err == "" and out.startswith("cached ") and len(out.splitlines()) == 2
    progress.set_quiet(False)

    # without --quiet, a terminal gets bars and the table: what --quiet must remove is really there
    rc, out, err = run_on_terminal(monkeypatch, ["compare", str(tmp_path / "run"), "--out", str(tmp_path / "loud")])
    assert rc == 0 and "aligning pairs" in err and "\r" in err and "shared fraction" in out

    monkeypatch.chdir(tmp_path)  # relative paths on the command line; the JSON outputs record them relative to the file
    rc, out, err = run_on_terminal(monkeypatch, ["compare", "run", "--out", "cmp", "--quiet"])
    assert (rc, out, err) == (0, "", "")
    progress.set_quiet(False)
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["schema"] == "saeseeds.compare/1" and summary["saeseeds_version"] == saeseeds.__version__
    assert all(p.startswith("../run/") and (tmp_path / "cmp" / p).is_dir() for p in summary["sets"][0]["paths"])

    rc, out, err = run_on_terminal(monkeypatch, ["analyze", "run", "--out", "an", "--compare", "cmp", "--quiet",
                                                 "--no-lm-loss", "--n-random", "2", "--n-show", "2"])
    assert (rc, out, err) == (0, "", "")
    progress.set_quiet(False)
    analysis = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert analysis["saeseeds_version"] == saeseeds.__version__ and analysis["run_dir"] == "../run"

    rc, out, err = run_on_terminal(monkeypatch, ["compare", str(tmp_path / "nope"), "--out", str(tmp_path / "x"),
                                                 "--quiet"])
    assert rc == 2 and out == "" and err.count("\n") == 1 and "nope" in err  # errors still print, one line


def test_off_terminal_status_is_bounded_by_time_not_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.delenv(progress.STATUS_ENV, raising=False)
    steps = 200_000
    bar = progress.tqdm(total=steps, desc="train", unit="step")
    for _ in range(steps):  # 1000 simulated seconds at 5 ms per step
        clock[0] += 0.005
        bar.update(1)
        bar.set_postfix(mean_fvu="0.123", l0="31.9")
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert 1000 / 30 - 1 <= len(lines) <= 1000 / 30 + 2 and len(err) < 150 * len(lines)
    assert re.match(r"train: 6,00\d/200,000 \(3%\) step, elapsed 0:30, 200 step/s, eta 16:\d\d, mean_fvu=0.123",
                    lines[0]), lines[0]
    assert lines[-1].startswith("train: 200,000/200,000 (100%) step")


def test_off_terminal_short_run_and_quiet_print_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_quiet: None
) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    for _ in progress.tqdm(range(1000), desc="short"):
        pass
    monkeypatch.setenv(progress.STATUS_ENV, "0.000001")
    progress.set_quiet(True)
    for _ in progress.tqdm(np.arange(100), desc="quiet"):
        pass
    progress.set_quiet(False)
    assert capsys.readouterr().err == ""
    counted = []
    for _ in progress.tqdm(range(5), desc="counted"):  # off a terminal with a tiny interval: one line per item
        counted.append(1)
    lines = capsys.readouterr().err.splitlines()
    assert len(counted) == 5 and 4 <= len(lines) <= 6 and lines[-1].startswith("counted: 5/5 (100%) it")
