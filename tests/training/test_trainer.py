"""The lockstep trainer: S seeds together equal S separate runs; resume is exact; fingerprints; bad data."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import CheckpointError, DataError
from saeseeds.sae import load_sae
from saeseeds.training import list_checkpoints, read_manifest, train_run


def sparse_data(rows: int = 4096, d: int = 12, n_true: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=1)
    codes = (torch.rand(rows, n_true, generator=g) < 0.08) * torch.rand(rows, n_true, generator=g) * 3
    return codes @ dictionary + 0.5


def stream(x: torch.Tensor, sizes: int = 100) -> list[torch.Tensor]:
    """Uneven source batches, to exercise re-batching."""
    return list(x.split(sizes))


def config(seeds: list[int], archs=("topk", "relu"), steps: int = 12, **train) -> RunConfig:
    saes = [SaeConfig(architecture=a, num_latents=48, k=4, l1_coefficient=0.5) for a in archs]
    tcfg = TrainConfig(seeds=seeds, batch_size=64, num_tokens=64 * steps, lr_warmup_steps=3,
                       dead_tokens_threshold=128, progress=False, eval_tokens=512, **train)
    return RunConfig(data=DataConfig(source="npy"), train=tcfg, saes=saes)


def pair(x: torch.Tensor) -> SourcePair:
    return SourcePair(stream(x[:-256]), [x[-256:]], {"source": "test"})


def params(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f"{r.sae_name}/{r.seed}": {k: v.clone() for k, v in load_sae(r.path).state_dict().items()}
            for r in list_checkpoints(run_dir)}


def test_lockstep_seeds_equal_separate_runs(tmp_path: Path) -> None:
    x = sparse_data()
    together = train_run(config([0, 1, 2]), pair(x), tmp_path / "together")
    joint = params(tmp_path / "together")
    assert len(joint) == 6
    for seed in (0, 1, 2):
        alone = train_run(config([seed]), pair(x), tmp_path / f"alone{seed}")
        assert alone.fingerprint == together.fingerprint
        for name, tensors in params(tmp_path / f"alone{seed}").items():
            for key, value in tensors.items():
                assert torch.equal(joint[name][key], value), f"{name}:{key} differs between lockstep and separate"
    # and the seeds really differ from each other
    assert not torch.equal(joint["topk-48/0"]["W_dec"], joint["topk-48/1"]["W_dec"])


def test_run_directory_layout_and_manifest(tmp_path: Path) -> None:
    x = sparse_data()
    result = train_run(config([0, 1]), pair(x), tmp_path / "run")
    manifest = read_manifest(tmp_path / "run")
    assert manifest["status"] == "complete" and manifest["step"] == 12
    assert manifest["fingerprint"]["train"] == result.fingerprint and manifest["fingerprint"]["batches"] == 12
    assert manifest["seeds"] == [0, 1] and manifest["config"]["train"]["batch_size"] == 64
    assert {"torch", "numpy", "saeseeds"} <= set(manifest["versions"])
    refs = list_checkpoints(tmp_path / "run")
    assert [(r.hookpoint, r.sae_name, r.seed) for r in refs] == [
        ("activations", "relu-48", 0), ("activations", "relu-48", 1),
        ("activations", "topk-48", 0), ("activations", "topk-48", 1),
    ]
    assert (tmp_path / "run" / "activations" / "topk-48" / "seed1" / "sae.safetensors").is_file()
    for key, metrics in result.metrics.items():
        assert 0 <= metrics["fvu"] < 1.5 and metrics["l0"] > 0, key


def test_training_reduces_fvu(tmp_path: Path) -> None:
    x = sparse_data(rows=8192)
    short = train_run(config([0], archs=("topk",), steps=2), pair(x), tmp_path / "a")
    long = train_run(config([0], archs=("topk",), steps=100), pair(x), tmp_path / "b")
    key = "activations/topk-48/seed0"
    assert long.metrics[key]["fvu"] < 0.6 * short.metrics[key]["fvu"]


def test_checkpoints_are_in_raw_activation_units(tmp_path: Path) -> None:
    """The input scale is folded into saved weights: evaluating the checkpoint on raw data gives the run's FVU."""
    from saeseeds.training.evaluate import evaluate_sae

    x = sparse_data() * 40  # far from unit scale
    result = train_run(config([0], archs=("topk",)), pair(x), tmp_path / "run")
    ref = list_checkpoints(tmp_path / "run")[0]
    metrics, _ = evaluate_sae(load_sae(ref.path), [x[-256:]])
    assert metrics.fvu == pytest.approx(result.metrics["activations/topk-48/seed0"]["fvu"], rel=1e-4)


class Interrupting:
    """A source that raises after `limit` batches, like a killed job."""

    def __init__(self, batches: list[torch.Tensor], limit: int) -> None:
        self.batches, self.limit = batches, limit

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i, b in enumerate(self.batches):
            if i == self.limit:
                raise KeyboardInterrupt
            yield b


def test_resume_continues_exactly(tmp_path: Path) -> None:
    x = sparse_data()
    cfg = config([0, 1], steps=12, checkpoint_every=4)
    full = train_run(cfg, pair(x), tmp_path / "full")
    batches = stream(x[:-256], 64)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, SourcePair(Interrupting(batches, 7), [x[-256:]], {}), tmp_path / "cut")
    assert read_manifest(tmp_path / "cut")["status"] == "running"
    with pytest.raises(CheckpointError, match="pass --resume"):
        train_run(cfg, pair(x), tmp_path / "cut")
    resumed = train_run(cfg, pair(x), tmp_path / "cut", resume=True)
    assert resumed.fingerprint == full.fingerprint and resumed.steps == 12
    a, b = params(tmp_path / "full"), params(tmp_path / "cut")
    for name in a:
        for key in a[name]:
            assert torch.allclose(a[name][key], b[name][key], atol=1e-6), f"{name}:{key}"


def test_resume_refuses_different_data(tmp_path: Path) -> None:
    x = sparse_data()
    cfg = config([0], steps=12, checkpoint_every=4)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, SourcePair(Interrupting(stream(x[:-256], 64), 9), [x[-256:]], {}), tmp_path / "cut")
    other = sparse_data(seed=1)
    with pytest.raises(DataError, match="data stream differs"):
        train_run(cfg, pair(other), tmp_path / "cut", resume=True)


def test_resume_without_a_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="holds no interrupted run"):
        train_run(config([0]), pair(sparse_data()), tmp_path / "empty", resume=True)


def test_nan_activations_are_rejected(tmp_path: Path) -> None:
    x = sparse_data()
    x[500, 3] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        train_run(config([0]), pair(x), tmp_path / "run")


def test_changing_width_is_rejected(tmp_path: Path) -> None:
    batches = [torch.randn(64, 12), torch.randn(64, 13)]
    with pytest.raises(DataError, match="d_in changed from 12 to 13"):
        train_run(config([0], steps=2), SourcePair(batches, [], {}), tmp_path / "run")


def test_several_hookpoints_from_one_stream(tmp_path: Path) -> None:
    x = sparse_data()
    y = sparse_data(d=8, seed=3)
    batches = [{"layer.1": a, "layer.2": b} for a, b in zip(x[:-256].split(64), y[:-256].split(64))]
    evals = [{"layer.1": x[-256:], "layer.2": y[-256:]}]
    train_run(config([0, 1], archs=("topk",)), SourcePair(batches, evals, {}), tmp_path / "run")
    refs = list_checkpoints(tmp_path / "run")
    assert {(r.hookpoint, r.seed) for r in refs} == {("layer.1", 0), ("layer.1", 1), ("layer.2", 0), ("layer.2", 1)}
    assert load_sae([r for r in refs if r.hookpoint == "layer.2"][0].path).d_in == 8


def test_array_source_from_npy_via_cli(tmp_path: Path) -> None:
    from saeseeds.cli import main

    x = sparse_data(rows=3000).numpy().astype(np.float32)
    np.save(tmp_path / "acts.npy", x)
    (tmp_path / "cfg.toml").write_text(
        f"""
[data]
source = "npy"
path = "{tmp_path / 'acts.npy'}"
[train]
seeds = [0, 1, 2]
batch_size = 128
num_tokens = 2560
progress = false
[[sae]]
architecture = "topk"
num_latents = 32
k = 4
[[sae]]
architecture = "relu"
num_latents = 32
"""
    )
    assert main(["train", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "run"), "--train.lr", "2e-3"]) == 0
    manifest = read_manifest(tmp_path / "run")
    assert manifest["config"]["train"]["lr"] == 2e-3 and manifest["step"] == 20
    assert len(list_checkpoints(tmp_path / "run")) == 6
    # a bad override is one clear line and exit status 2
    assert main(["train", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "r2"), "--train.nope", "1"]) == 2


def test_config_dataclass_is_not_mutated(tmp_path: Path) -> None:
    cfg = config([0])
    before = dataclasses.asdict(cfg)
    train_run(cfg, pair(sparse_data()), tmp_path / "run")
    assert dataclasses.asdict(cfg) == before
