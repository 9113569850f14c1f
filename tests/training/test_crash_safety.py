"""Kills at every write of a run's checkpoints and state: `--resume` then gives bit-identical weights or refuses.

Fault injection: every file operation the writers use (os.replace/rename, torch.save, safetensors save_file,
shutil.rmtree) counts; at the n-th the "process dies" (raises Killed, and every later operation too, so no
cleanup handler runs). Plus one real SIGKILL of a training subprocess.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import saeseeds.sae.checkpoint as checkpoint_module
import saeseeds.training.eval_store as eval_store_module
from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import CheckpointError
from saeseeds.training import list_checkpoints, read_manifest, train_run


class Killed(BaseException):
    """The simulated SIGKILL: nothing after it runs."""


def data(rows: int = 64 * 6 + 128, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(rows, d, generator=g).abs() + 0.1


def run_config(steps: int = 6, checkpoint_every: int = 2) -> RunConfig:
    train = TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=64 * steps, lr_warmup_steps=1, progress=False,
                        checkpoint_every=checkpoint_every, eval_every=3, dead_tokens_threshold=128)
    return RunConfig(data=DataConfig(source="npy"), train=train, saes=[SaeConfig(architecture="topk", num_latents=16, k=3)])


def source(x: torch.Tensor) -> SourcePair:
    return SourcePair(list(x[:-128].split(50)), [x[-128:]], {"source": "test"})


def weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(r.path.relative_to(run_dir)): load_file(str(r.path / "sae.safetensors")) for r in list_checkpoints(run_dir)}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and wa
    for name in wa:
        for key in wa[name]:
            assert torch.equal(wa[name][key], wb[name][key]), f"{name}:{key} differs"


class KillSwitch:
    """Counts the patched operations; from the `at`-th on, each raises Killed instead of running."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int) -> None:
        self.at, self.calls = at, 0
        targets = [(os, "replace"), (os, "rename"), (torch, "save"), (shutil, "rmtree"),
                   (checkpoint_module, "save_file"), (eval_store_module, "save_file")]
        for owner, name in targets:
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))

    def wrap(self, fn):
        def op(*args, **kwargs):
            self.calls += 1
            if self.calls >= self.at:
                raise Killed
            return fn(*args, **kwargs)

        return op


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    train_run(run_config(), source(data()), out)
    return out


def test_every_kill_point_resumes_exactly_or_refuses(tmp_path: Path, reference: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        counter = KillSwitch(mp, at=10**9)
        train_run(run_config(), source(data()), tmp_path / "count")
    total = counter.calls
    assert total > 30  # every checkpoint, state commit, eval file and manifest write is a kill point
    exact, refused = 0, []
    for n in range(1, total + 1):
        out = tmp_path / f"kill{n}"
        with pytest.MonkeyPatch.context() as mp:
            KillSwitch(mp, at=n)
            with pytest.raises(Killed):
                train_run(run_config(), source(data()), out)
        try:
            result = train_run(run_config(), source(data()), out, resume=True)
        except CheckpointError as err:
            assert "\n" not in str(err)
            refused.append(n)
            continue
        assert result.steps == 6 and read_manifest(out)["status"] == "complete"
        assert_same_weights(reference, out)
        assert not [p for p in out.rglob("*") if "saeseeds-tmp" in p.name or "saeseeds-old" in p.name]
        assert len(list((out / ".state").iterdir())) == 2  # trainer.json and the one committed set
        exact += 1
        shutil.rmtree(out)
    # only a kill inside the very first state commit (before step 0 exists) may leave nothing to resume
    assert refused == list(range(1, len(refused) + 1)) and len(refused) <= 3, refused
    assert exact >= total - 3


SCRIPT = """
import sys, time, torch
sys.path.insert(0, {tests!r})
from test_crash_safety import data, run_config, source
from saeseeds.data.types import SourcePair
from saeseeds.training import train_run
torch.set_num_threads(1)

class Slow:
    def __init__(self, batches): self.batches = batches
    def __iter__(self):
        for b in self.batches:
            time.sleep(0.03)
            yield b

pair = source(data(64 * 24 + 128))
train_run(run_config(steps=24, checkpoint_every=4), SourcePair(Slow(pair.train), pair.eval, pair.info),
          sys.argv[1], resume=sys.argv[2] == "resume")
"""


def test_real_sigkill_then_resume_is_exact(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = os.environ | {"PYTHONUNBUFFERED": "1"}

    def job(out: Path, mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(out), mode], env=env, stderr=subprocess.PIPE)

    full = job(tmp_path / "full", "new")
    cut = job(tmp_path / "cut", "new")
    pointer = tmp_path / "cut" / ".state" / "trainer.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and cut.poll() is None:
        if pointer.is_file() and '"step": 0,' not in pointer.read_text():
            time.sleep(0.05)  # well inside the run: between or during later writes
            break
        time.sleep(0.01)
    assert cut.poll() is None, "the job finished before it could be killed"
    os.kill(cut.pid, signal.SIGKILL)
    cut.wait()
    assert read_manifest(tmp_path / "cut")["status"] == "running"
    resumed = job(tmp_path / "cut", "resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
    assert full.wait(timeout=120) == 0, full.stderr.read().decode()[-2000:]
    assert read_manifest(tmp_path / "cut")["status"] == "complete"
    assert_same_weights(tmp_path / "full", tmp_path / "cut")

