"""D11 (reliability campaign 3): one writer per run directory. A second `train` into a run that another process
is writing (plain, --resume or --overwrite) is refused in one line naming the holder's PID and changes nothing;
the lock lives as long as the run and a killed holder's stale lock file stops nobody."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.training.test_logging import data, run_config, source

from saeseeds.cli import main
from saeseeds.data.types import SourcePair
from saeseeds.errors import CheckpointError
from saeseeds.training import read_manifest, train_run
from saeseeds.training.run_lock import LOCK_FILE, RunLock, holder_pid

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 6

HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(120)
"""


def config():
    return run_config(STEPS, checkpoint_every=2)


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_d11_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_run(config(), source(STEPS), out)
    before = tree(out)
    lock = RunLock.acquire(out)  # this process writes the run (another open file: flock refuses the next one)
    assert lock is not None and holder_pid(out) == str(os.getpid())
    try:
        for mode in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(CheckpointError, match=rf"in use by another saeseeds process \(PID {os.getpid()}\)") as err:
                train_run(config(), source(STEPS), out, **mode)
            assert "\n" not in str(err.value)
            assert {k: v for k, v in tree(out).items() if k != LOCK_FILE} == before, mode  # nothing touched
    finally:
        lock.release()
    assert not (out / LOCK_FILE).exists() and holder_pid(out) is None
    train_run(config(), source(STEPS), out, overwrite=True)
    assert read_manifest(out)["status"] == "complete"


def test_d11_the_lock_is_held_while_training_and_removed_after(tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[str | None] = []

    class Watch:
        def __init__(self, batches):
            self.batches = batches

        def __iter__(self):
            for batch in self.batches:
                seen.append(holder_pid(out))
                yield batch

    pair = source(STEPS)
    train_run(config(), SourcePair(Watch(pair.train), pair.eval, pair.info), out)
    assert seen and set(seen) == {str(os.getpid())}
    assert not (out / LOCK_FILE).exists()


def test_d11_cli_refuses_while_another_process_holds_the_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "acts.npy", data(32 * STEPS + 64).numpy())
    (tmp_path / "cfg.toml").write_text(
        f'[data]\nsource = "npy"\npath = "{tmp_path / "acts.npy"}"\n'
        "[train]\nseeds = [0, 1]\nbatch_size = 32\nnum_tokens = 192\nprogress = false\n"
        '[[sae]]\narchitecture = "topk"\nnum_latents = 16\nk = 2\n'
    )
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert main(["train", str(tmp_path / "cfg.toml"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"saeseeds train: error: {out} is in use by another saeseeds process (PID {holder.pid}); "
                       "wait for it to end, or stop it, then retry"]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_FILE).exists() and holder_pid(out) is None  # the killed holder's file: stale
    assert main(["train", str(tmp_path / "cfg.toml"), "--out", str(out)]) == 0
    assert read_manifest(out)["status"] == "complete" and not (out / LOCK_FILE).exists()
