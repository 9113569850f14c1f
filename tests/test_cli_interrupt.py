"""Ctrl-C (SIGINT) ends every verb with one line on stderr and exit status 130, never a KeyboardInterrupt
traceback; `train` says the step it reached and how to resume (reliability campaign 3)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.training.test_logging import data, source

import saeseeds.api.training as api_training
import saeseeds.commands.compare as compare_command
from saeseeds.cli import main
from saeseeds.training import read_manifest

STEPS = 16
CONFIG = """[data]
source = "npy"
path = "{path}"
[train]
seeds = [0, 1]
batch_size = 32
num_tokens = {tokens}
checkpoint_every = 4
progress = false
[[sae]]
architecture = "topk"
num_latents = 16
k = 2
"""


def cli(args: list[str]) -> int:
    """`saeseeds ARGS` in-process; a KeyboardInterrupt escaping it fails the test instead of ending the session."""
    try:
        return main(args)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped saeseeds.cli.main (a traceback for the user)")


def write_config(tmp_path: Path, steps: int = STEPS) -> Path:
    np.save(tmp_path / "acts.npy", data(32 * steps + 64).numpy())
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG.format(path=tmp_path / "acts.npy", tokens=32 * steps))
    return path


def test_sigint_train_is_one_line_naming_the_step_and_exit_130(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path)
    monkeypatch.setattr(api_training, "build_source", lambda cfg: source(STEPS, limit=10))  # Ctrl-C after step 10
    assert cli(["train", str(config), "--out", str(tmp_path / "run"), "--threads", "1"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["saeseeds train: interrupted at step 10; resume with --resume "
                   "(it continues from the state committed at step 8)"]
    monkeypatch.setattr(api_training, "build_source", lambda cfg: source(STEPS))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--resume", "--threads", "1"]) == 0
    assert read_manifest(tmp_path / "run")["status"] == "complete"


def test_sigint_any_verb_is_one_line_and_exit_130(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(compare_command, "run", interrupted)
    assert cli(["compare", str(tmp_path / "a"), "--out", str(tmp_path / "cmp")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["saeseeds compare: interrupted"]


SLOW_TRAIN = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner may start us with SIGINT ignored
import saeseeds.data.sources as sources
build = sources.build_source

class Slow:
    def __init__(self, batches):
        self.batches = batches
    def __iter__(self):
        for batch in self.batches:
            time.sleep(0.05)
            yield batch

def slow_source(cfg):
    pair = build(cfg)
    return pair._replace(train=Slow(pair.train))

sources.build_source = slow_source
from saeseeds.cli import entry
entry()
"""


def test_sigint_real_signal_to_a_training_process(tmp_path: Path) -> None:
    config = write_config(tmp_path, steps=400)
    out = tmp_path / "run"
    command = [sys.executable, "-c", SLOW_TRAIN, "train", str(config), "--out", str(out), "--threads", "1"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pointer, deadline = out / ".state" / "trainer.json", time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if pointer.is_file() and '"step": 0,' not in pointer.read_text():
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be interrupted"
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"saeseeds train: interrupted at step \d+; resume with --resume \(it continues from the "
                        r"state committed at step \d+\)", lines[0]), lines[0]
