"""D12 (reliability campaign 3): a full disk during `train` is one line naming the file and the bytes it needed
(exit 2 from the CLI), never a traceback, and the committed state stays intact: `--resume` after freeing space
finishes with the uninterrupted run's weights. The full disk is injected into each kind of writer, in the shape
that writer reports it (an OSError, safetensors' SafetensorError, torch's "unexpected pos" RuntimeError)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from tests.training.test_crash_safety import assert_same_weights, data, run_config, source

import saeseeds.sae.checkpoint as checkpoint_module
import saeseeds.training.eval_store as eval_store_module
import saeseeds.training.logging as logging_module
import saeseeds.training.state as state_module
from saeseeds.cli import main
from saeseeds.training import read_manifest, train_run
from saeseeds.training.diskspace import DiskFullError

pytestmark = pytest.mark.usefixtures("one_thread")


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def torch_zip_error() -> RuntimeError:
    """What torch.save into a Python file raises on a full disk: its zip writer's error, the OSError as context."""
    err = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1472 vs 1366")
    err.__context__ = enospc()
    return err


def failing(real: Callable, error: Callable[[], BaseException], after: int) -> Callable:
    """`real`, except that from the (after+1)-th call on it raises `error()`."""
    calls = [0]

    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise error()
        return real(*args, **kwargs)

    return call


class FullOpen:
    """`open` for metrics.jsonl appends that fails once `after` appends went through."""

    def __init__(self, after: int) -> None:
        self.after, self.calls = after, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        if "a" in mode:
            self.calls += 1
            if self.calls > self.after:
                raise enospc()
        return open(path, mode, *args, **kwargs)


INJECTIONS = {
    # the 3rd state file written (the step-2 commit, after step 0's two members)
    "state-oserror": (state_module.torch, "save", lambda: failing(torch.save, enospc, 2)),
    "state-torch-zip": (state_module.torch, "save", lambda: failing(torch.save, torch_zip_error, 2)),
    "checkpoint-safetensors": (checkpoint_module, "save_file", lambda: failing(
        checkpoint_module.save_file,
        lambda: SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), 1)),
    "eval-store": (eval_store_module, "save_file", lambda: failing(eval_store_module.save_file, enospc, 0)),
    "metrics": (logging_module, "open", lambda: FullOpen(after=1)),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    train_run(run_config(), source(data()), out)
    return out


@pytest.mark.parametrize("where", list(INJECTIONS))
def test_d12_disk_full_is_one_line_and_the_committed_state_resumes(tmp_path: Path, reference: Path,
                                                                   where: str) -> None:
    owner, name, make = INJECTIONS[where]
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(owner, name, make(), raising=False)
        with pytest.raises(DiskFullError) as err:
            train_run(run_config(), source(data()), out)
    message = str(err.value)
    assert "\n" not in message and "no space left" in message and "bytes" in message
    assert str(out) in message  # the file (or checkpoint directory) it was writing
    assert not [p for p in out.rglob("*") if "saeseeds-tmp" in p.name]  # no half-written file left
    train_run(run_config(), source(data()), out, resume=True)
    assert read_manifest(out)["status"] == "complete"
    assert_same_weights(reference, out)


def test_d12_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "acts.npy", data().numpy())
    (tmp_path / "cfg.toml").write_text(
        f'[data]\nsource = "npy"\npath = "{tmp_path / "acts.npy"}"\n'
        "[train]\nseeds = [0, 1]\nbatch_size = 64\nnum_tokens = 384\ncheckpoint_every = 2\nprogress = false\n"
        '[[sae]]\narchitecture = "topk"\nnum_latents = 16\nk = 3\n'
    )
    monkeypatch.setattr(state_module.torch, "save", failing(torch.save, torch_zip_error, 2))
    assert main(["train", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("saeseeds train: error: no space left on the device writing ")
    assert "seed0.pt: it needs about" in err[0] and "--resume" in err[0]


def test_d12_guard_recognises_torch_errors_by_free_space_and_passes_others(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save to a path reports a full disk only as "unexpected pos": it counts when less space is free
    than the write needs; any other error passes through unchanged."""
    import saeseeds.training.diskspace as diskspace

    target = tmp_path / "state.pt"
    bare = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 100)
    with pytest.raises(DiskFullError, match="it needs about 5,000 bytes, 100 free"):
        with diskspace.disk_full_guard(target, 5000):
            raise bare
    with pytest.raises(RuntimeError, match="unexpected pos"):  # room enough: not a full disk
        with diskspace.disk_full_guard(target, 50):
            raise bare
    with pytest.raises(ValueError, match="unrelated"):
        with diskspace.disk_full_guard(target, 5000):
            raise ValueError("unrelated")
