"""What a run directory refuses: changed configs on resume, strangers' directories, missing seeds, corrupt state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.training import list_checkpoints, read_manifest, train_run


def data() -> torch.Tensor:
    return torch.randn(64 * 8 + 128, 8, generator=torch.Generator().manual_seed(1)).abs() + 0.1


def cfg(**train) -> RunConfig:
    base = dict(seeds=[0, 1], batch_size=64, num_tokens=64 * 8, lr_warmup_steps=1, progress=False, checkpoint_every=2)
    return RunConfig(data=DataConfig(source="npy"), train=TrainConfig(**(base | train)),
                     saes=[SaeConfig(architecture="topk", num_latents=16, k=3)])


class Cut:
    """A source that dies (KeyboardInterrupt) after `limit` batches."""

    def __init__(self, x: torch.Tensor, limit: int) -> None:
        self.batches, self.limit = list(x.split(64)), limit

    def __iter__(self):
        for i, b in enumerate(self.batches):
            if i == self.limit:
                raise KeyboardInterrupt
            yield b


def pair(x: torch.Tensor, limit: int | None = None) -> SourcePair:
    train = x[:-128]
    return SourcePair(Cut(train, limit) if limit else list(train.split(64)), [x[-128:]], {"source": "test"})


def interrupted(out: Path, **train) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg(**train), pair(data(), limit=5), out)


@pytest.mark.parametrize(
    ("override", "field"),
    [({"lr": 1e-3}, "train.lr"), ({"num_tokens": 64 * 9}, "train.num_tokens"),
     ({"normalize_activations": False}, "train.normalize_activations"), ({"adam_beta2": 0.99}, "train.adam_beta2")],
)
def test_resume_refuses_a_config_that_changes_training(tmp_path: Path, override: dict, field: str) -> None:
    interrupted(tmp_path / "run")
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        train_run(cfg(**override), pair(data()), tmp_path / "run", resume=True)
    assert "\n" not in str(err.value)
    assert read_manifest(tmp_path / "run")["config"]["train"]["lr"] == 0.0  # nothing recorded


def test_resume_refuses_a_changed_sae(tmp_path: Path) -> None:
    interrupted(tmp_path / "run")
    changed = cfg()
    changed.saes[0].k = 4
    with pytest.raises(ConfigError, match=r"saes\.0\.k: 3 -> 4"):
        train_run(changed, pair(data()), tmp_path / "run", resume=True)


def test_resume_allows_cadence_changes_and_records_them(tmp_path: Path) -> None:
    full = tmp_path / "full"
    train_run(cfg(), pair(data()), full)
    interrupted(tmp_path / "run")
    train_run(cfg(checkpoint_every=3, eval_every=2), pair(data()), tmp_path / "run", resume=True)
    manifest = read_manifest(tmp_path / "run")
    assert manifest["config"]["train"]["checkpoint_every"] == 3
    assert manifest["resumes"] == [{"step": 4, "changed": {"train.checkpoint_every": [2, 3], "train.eval_every": [0, 2]}}]
    for a, b in zip(list_checkpoints(full), list_checkpoints(tmp_path / "run")):
        wa, wb = load_file(str(a.path / "sae.safetensors")), load_file(str(b.path / "sae.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_non_empty_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"mine": 1}\n')
    with pytest.raises(CheckpointError, match="not empty and holds no saeseeds run"):
        train_run(cfg(), pair(data()), out)
    assert (out / "metrics.jsonl").read_text() == '{"mine": 1}\n'
    with pytest.raises(ConfigError, match="exclude each other"):
        train_run(cfg(), pair(data()), out, resume=True, overwrite=True)
    with pytest.raises(CheckpointError, match="replaces only an earlier saeseeds run"):  # never foreign files
        train_run(cfg(), pair(data()), out, overwrite=True)
    assert (out / "metrics.jsonl").read_text() == '{"mine": 1}\n'
    (out / "metrics.jsonl").unlink()
    train_run(cfg(), pair(data()), out)
    with pytest.raises(CheckpointError, match="already holds a run"):
        train_run(cfg(), pair(data()), out)
    train_run(cfg(), pair(data()), out, overwrite=True)  # a run may be replaced too
    assert read_manifest(out)["status"] == "complete"


def test_cli_overwrite_flag_and_refusal(tmp_path: Path) -> None:
    import numpy as np

    from saeseeds.cli import main

    np.save(tmp_path / "acts.npy", data().numpy())
    (tmp_path / "cfg.toml").write_text(
        f'[data]\nsource = "npy"\npath = "{tmp_path / "acts.npy"}"\n'
        "[train]\nseeds = [0]\nbatch_size = 64\nnum_tokens = 256\nprogress = false\n"
        '[[sae]]\narchitecture = "topk"\nnum_latents = 16\nk = 3\n'
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    args = ["train", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "out")]
    assert main(args) == 2 and (tmp_path / "out" / "notes.txt").is_file()
    assert main([*args, "--overwrite"]) == 2 and (tmp_path / "out" / "notes.txt").is_file()  # not a run: kept
    (tmp_path / "out" / "notes.txt").unlink()
    assert main(args) == 0 and main(args) == 2  # a run now: plain train refuses, --overwrite replaces it
    assert main([*args, "--overwrite"]) == 0


def test_a_listed_seed_missing_on_disk_is_an_error(tmp_path: Path) -> None:
    import shutil

    train_run(cfg(), pair(data()), tmp_path / "run")
    missing = tmp_path / "run" / "activations" / "topk-16" / "seed1"
    shutil.rmtree(missing)
    with pytest.raises(CheckpointError, match=str(missing)):
        list_checkpoints(tmp_path / "run")
    with pytest.warns(UserWarning, match="missing"):
        refs = list_checkpoints(tmp_path / "run", allow_missing=True)
    assert [r.seed for r in refs] == [0]


def _corrupt_json(state: Path) -> None:
    (state / "trainer.json").write_text('{"step": 4, "fingerp')


def _truncate_member(state: Path) -> None:
    pointer = json.loads((state / "trainer.json").read_text())
    member = next((state / pointer["set"]).rglob("*.pt"))
    member.write_bytes(member.read_bytes()[:100])


def _garbage_member(state: Path) -> None:
    pointer = json.loads((state / "trainer.json").read_text())
    member = next((state / pointer["set"]).rglob("*.pt"))
    size = member.stat().st_size
    member.write_bytes(b"x" * size)  # same size, unreadable


@pytest.mark.parametrize("damage", [_corrupt_json, _truncate_member, _garbage_member])
def test_corrupt_state_is_one_line_checkpoint_error(tmp_path: Path, damage) -> None:
    interrupted(tmp_path / "run")
    damage(tmp_path / "run" / ".state")
    with pytest.raises(CheckpointError, match="--resume") as err:
        train_run(cfg(), pair(data()), tmp_path / "run", resume=True)
    assert "\n" not in str(err.value) and ".state" in str(err.value)

