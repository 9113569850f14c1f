"""Resume after kills and damage (reliability campaign 3): metrics.jsonl equals the uninterrupted run's (D1, D2),
damaged trainer state is refused naming the file (D9), a damaged stored held-out set is written again (D16), and
a run killed before its first commit can be started again (D18). Each test is named after the defect it pins."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tests.training.test_crash_safety import Killed, KillSwitch, assert_same_weights
from tests.training.test_logging import run_config, source

from saeseeds.config import SaeConfig
from saeseeds.errors import CheckpointError
from saeseeds.training import read_manifest, train_run
from saeseeds.training.eval_store import read_stored_batches
from saeseeds.training.run_lock import LOCK_FILE
from saeseeds.training.trainer import _Run

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 12


def metrics(run: Path) -> str:
    return (run / "metrics.jsonl").read_text()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every resumed one is compared with (log every 4, evaluate every 6, commit every 5)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train_run(config(), source(STEPS), out)
    return out


def config(**train: object):
    return run_config(STEPS, log_every=4, eval_every=6, checkpoint_every=5, **train)


def interrupted(out: Path, limit: int = 8, **train: object) -> None:
    """A run stopped by Ctrl-C before batch `limit` (its last commit: step 5)."""
    with pytest.raises(KeyboardInterrupt):
        train_run(config(**train), source(STEPS, limit=limit), out)


# ------------------------------------------------------------------ D1: final training lines kept


def test_d1_resume_of_a_complete_run_keeps_its_final_training_lines(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    train_run(config(), source(STEPS), out, resume=True)
    assert metrics(out) == metrics(reference)
    finals = [json.loads(line) for line in metrics(out).splitlines() if f'"step": {STEPS},' in line]
    assert [r["kind"] for r in finals] == ["train", "train", "eval", "eval"]
    assert read_manifest(out)["status"] == "complete"


def test_d1_kill_after_the_final_commit_then_resume(tmp_path: Path, reference: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    original = _Run.write_manifest

    def die_when_complete(self: _Run, status: str) -> None:
        if status == "complete":
            raise Killed  # the final state is committed, run.json still says "running"
        original(self, status)

    with monkeypatch.context() as mp:
        mp.setattr(_Run, "write_manifest", die_when_complete)
        with pytest.raises(Killed):
            train_run(config(), source(STEPS), out)
    assert read_manifest(out)["status"] == "running"
    assert json.loads((out / ".state" / "trainer.json").read_text())["step"] == STEPS
    train_run(config(), source(STEPS), out, resume=True)
    assert metrics(out) == metrics(reference)
    assert read_manifest(out)["eval"]["metrics"] == read_manifest(reference)["eval"]["metrics"]
    assert_same_weights(reference, out)


# ------------------------------------------------------------------ D2: batched seeds, open interval


def test_d2_batched_resume_inside_a_logging_interval_writes_the_uninterrupted_lines(tmp_path: Path) -> None:
    # commits at 5 and 10, lines at 4, 8, 12: a Ctrl-C after step 8 resumes from step 5, inside the interval 5-8,
    # whose step 5 the seed stack had summed on the device but not yet handed to the logger before the fix
    train_run(config(batched_seeds=True), source(STEPS), tmp_path / "full")
    interrupted(tmp_path / "cut", batched_seeds=True)
    train_run(config(batched_seeds=True), source(STEPS), tmp_path / "cut", resume=True)
    assert metrics(tmp_path / "cut") == metrics(tmp_path / "full")
    assert_same_weights(tmp_path / "full", tmp_path / "cut")
    step8 = [json.loads(line) for line in metrics(tmp_path / "cut").splitlines() if '"step": 8,' in line]
    assert step8 and all(1.6 < r["l0"] <= 2.0 for r in step8)  # the mean L0 of a k=2 TopK, not 3/4 of it


def test_d2_batched_l0_controller_logs_the_interval_mean(tmp_path: Path) -> None:
    """Under the L0 controller a stack reads its statistics every step; all of them reach the logged mean."""
    sae = SaeConfig(architecture="relu", num_latents=16, l1_coefficient=0.5, target_l0=3.0)
    logged = {}
    for batched in (False, True):
        cfg = dataclasses.replace(config(batched_seeds=batched), saes=[sae])
        train_run(cfg, source(STEPS), tmp_path / str(batched))
        logged[batched] = [json.loads(line) for line in metrics(tmp_path / str(batched)).splitlines()
                           if '"train"' in line]
    assert [(r["step"], r["key"]) for r in logged[True]] == [(r["step"], r["key"]) for r in logged[False]]
    for single, stacked in zip(logged[False], logged[True], strict=True):
        for name in ("loss", "fvu", "l0"):
            assert stacked[name] == pytest.approx(single[name], rel=1e-4), (single["step"], name)


# ------------------------------------------------------------------ D9: state digests


def _member_file(out: Path, seed: int) -> Path:
    pointer = json.loads((out / ".state" / "trainer.json").read_text())
    return out / ".state" / pointer["set"] / "activations" / "topk-16" / f"seed{seed}.pt"


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * 0.6)] ^= 0x01
    path.write_bytes(bytes(data))


def _link_to_other_seed(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("seed1.pt"))


@pytest.mark.parametrize("damage", [_flip_byte, _link_to_other_seed], ids=["flipped-byte", "symlink"])
def test_d9_changed_state_file_is_refused_naming_it(tmp_path: Path, damage) -> None:
    out = tmp_path / "run"
    interrupted(out)
    target = _member_file(out, 0)
    damage(target)
    with pytest.raises(CheckpointError, match="--resume") as err:
        train_run(config(), source(STEPS), out, resume=True)
    assert str(target) in str(err.value) and "\n" not in str(err.value)
    pointer = json.loads((out / ".state" / "trainer.json").read_text())
    assert set(pointer["sha256"]) == set(pointer["sizes"]) == {"activations/topk-16/seed0",
                                                              "activations/topk-16/seed1"}


def test_intact_digested_state_resumes_exactly(tmp_path: Path, reference: Path) -> None:
    interrupted(tmp_path / "run")
    train_run(config(), source(STEPS), tmp_path / "run", resume=True)
    assert_same_weights(reference, tmp_path / "run")
    assert metrics(tmp_path / "run") == metrics(reference)


# ------------------------------------------------------------------ D16: stored held-out set


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _fewer_rows(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_file({"acts": load_file(str(path))["acts"][:10].clone()}, str(path))


def _values_changed(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_file({"acts": load_file(str(path))["acts"] * 3}, str(path))


@pytest.mark.parametrize("damage", [_truncate, _fewer_rows, _values_changed])
def test_d16_resume_rewrites_a_damaged_stored_eval_set(tmp_path: Path, reference: Path, damage) -> None:
    out = tmp_path / "run"
    interrupted(out)
    stored = read_manifest(out)["eval"]["stored"]
    damage(out / stored["acts"]["activations"])
    train_run(config(), source(STEPS), out, resume=True)
    mine, theirs = read_stored_batches(out, read_manifest(out)), read_stored_batches(reference, read_manifest(reference))
    assert mine is not None and theirs is not None and len(mine) == len(theirs)
    assert all(torch.equal(a["activations"], b["activations"]) for a, b in zip(mine, theirs, strict=True))
    from saeseeds.training.eval_store import eval_set_problem

    assert eval_set_problem(out, read_manifest(out)["eval"]["stored"]) is None
    damage(out / stored["acts"]["activations"])
    assert eval_set_problem(out, stored) is not None


# ------------------------------------------------------------------ D18: killed before the first commit


def killed_before_first_commit(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that dies in its first state write (step 0 never committed), leaving a stale lock file too."""
    with monkeypatch.context() as mp:
        KillSwitch(mp, at=1)
        with pytest.raises(Killed):
            train_run(config(), source(STEPS), out)
    (out / LOCK_FILE).write_text(f"{2**22 + 12345}\n")  # what a SIGKILLed holder leaves: a file nobody locks
    assert (out / ".state").is_dir() and not (out / ".state" / "trainer.json").exists()


def test_d18_plain_train_starts_over_a_run_killed_before_its_first_commit(
        tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    killed_before_first_commit(out, monkeypatch)
    with pytest.raises(CheckpointError, match="stopped before its first commit: start it again without --resume"):
        train_run(config(), source(STEPS), out, resume=True)
    train_run(config(), source(STEPS), out)
    assert_same_weights(reference, out)
    assert metrics(out) == metrics(reference)
    entries = sorted(p.name for p in (out / ".state").iterdir())
    assert len(entries) == 2 and entries[1] == "trainer.json"  # the leftover set is gone: one committed set
    assert not (out / LOCK_FILE).exists()


def test_a_leftover_with_foreign_files_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    killed_before_first_commit(out, monkeypatch)
    (out / ".state" / "notes.txt").write_text("not saeseeds'")
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_run(config(), source(STEPS), out)
    assert (out / ".state" / "notes.txt").read_text() == "not saeseeds'"
    os.remove(out / ".state" / "notes.txt")
    (out / "mine.txt").write_text("keep")
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_run(config(), source(STEPS), out)
    assert (out / "mine.txt").read_text() == "keep"
