"""Training metrics sinks: metrics.jsonl rate and format, exact lines after a resume, TensorBoard events, wandb."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import ConfigError
from saeseeds.training import train_run
from saeseeds.training.logging import TrainLogger, resolve_log_every


def data(rows: int, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.relu(torch.randn(rows, d, generator=g)) + 0.1


def run_config(steps: int, **train: object) -> RunConfig:
    tcfg = TrainConfig(seeds=[0, 1], batch_size=32, num_tokens=32 * steps, lr_warmup_steps=2, progress=False,
                       eval_tokens=64, **train)  # type: ignore[arg-type]
    return RunConfig(data=DataConfig(source="npy"), train=tcfg,
                     saes=[SaeConfig(architecture="topk", num_latents=16, k=2)])


class Stop:
    """A stream that raises KeyboardInterrupt before its `limit`-th batch (a kill between steps)."""

    def __init__(self, batches: list[torch.Tensor], limit: int | None) -> None:
        self.batches, self.limit = batches, limit

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i, batch in enumerate(self.batches):
            if i == self.limit:
                raise KeyboardInterrupt
            yield batch


def source(steps: int, limit: int | None = None) -> SourcePair:
    x = data(32 * steps + 64)
    return SourcePair(Stop(list(x[:-64].split(32)), limit), [x[-64:]], {"source": "test"})


def lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_log_every_default_bounds_lines_per_sae() -> None:
    assert resolve_log_every(0, 400) == 10
    assert resolve_log_every(0, 244_000) == 244 and -(-244_000 // 244) <= 1001
    assert resolve_log_every(7, 400) == 7


def test_metrics_jsonl_rate_format_and_means(tmp_path: Path) -> None:
    train_run(run_config(23, log_every=5), source(23), tmp_path / "run")
    records = lines(tmp_path / "run")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    keys = {"activations/topk-16/seed0", "activations/topk-16/seed1"}
    assert [r["step"] for r in train] == [s for s in (5, 10, 15, 20, 23) for _ in range(2)]
    assert {r["key"] for r in train} == keys
    for r in train:
        assert set(r) == {"kind", "step", "key", "loss", "fvu", "l0", "lr"}
        assert r["loss"] > 0 and 0 < r["fvu"] < 2 and 0 < r["l0"] <= 2 and r["lr"] >= 0
    assert {r["key"] for r in evals} == keys and all(r["step"] == 23 for r in evals)
    assert any(a["lr"] != b["lr"] for a, b in zip(train, train[2:]))  # the schedule moves


def test_logger_averages_over_the_interval() -> None:
    logged: list[tuple[str, int, dict]] = []

    class Sink:
        def log(self, kind: str, step: int, scalars: dict) -> None:
            logged.append((kind, step, {k: dict(v) for k, v in scalars.items()}))

        def close(self) -> None:
            pass

    logger = TrainLogger(every=2, sinks=[Sink()])
    for step, value in enumerate([1.0, 3.0, 5.0], start=1):
        logger.record("a", value, value / 10, value * 2, 0.1 * step)
        logger.step_done(step, total_steps=3)
    assert logged == [("train", 2, {"a": {"loss": 2.0, "fvu": 0.2, "l0": 4.0, "lr": 0.2}}),
                      ("train", 3, {"a": {"loss": 5.0, "fvu": 0.5, "l0": 10.0, "lr": pytest.approx(0.3)}})]


def test_resume_writes_exactly_the_uninterrupted_lines(tmp_path: Path) -> None:
    # checkpoints at 6 and 12, logging every 4: the kill after step 9 leaves a committed state at step 6 inside
    # an open interval (steps 5-6), which the resumed run must continue, and a line at step 8 it must drop
    cfg = run_config(16, log_every=4, checkpoint_every=6)
    train_run(cfg, source(16), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, source(16, limit=9), tmp_path / "cut")
    cut_lines = lines(tmp_path / "cut")
    assert max(r["step"] for r in cut_lines) == 8
    train_run(cfg, source(16), tmp_path / "cut", resume=True)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


def test_tensorboard_event_files_are_written_and_readable(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'saeseeds[logging]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_run(run_config(12, log_every=4, tensorboard=True), source(12), tmp_path / "run")
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"activations/topk-16/seed0/train/loss", "activations/topk-16/seed1/train/lr",
            "activations/topk-16/seed0/eval/fvu"} <= tags
    steps = [e.step for e in acc.Scalars("activations/topk-16/seed0/train/fvu")]
    assert steps == [4, 8, 12]
    jsonl = [r for r in lines(tmp_path / "run") if r["kind"] == "train" and r["key"].endswith("seed0")]
    values = [e.value for e in acc.Scalars("activations/topk-16/seed0/train/fvu")]
    assert values == pytest.approx([r["fvu"] for r in jsonl], rel=1e-6)


def test_wandb_adapter_with_a_fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, list] = {"init": [], "log": [], "finish": []}

    class FakeRun:
        id = "abc123"

        def log(self, data: dict, step: int) -> None:
            calls["log"].append((step, data))

        def finish(self) -> None:
            calls["finish"].append(True)

    def init(**kwargs: object) -> FakeRun:
        calls["init"].append(kwargs)
        return FakeRun()

    fake = types.SimpleNamespace(init=init)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    train_run(run_config(8, log_every=4, wandb_project="proj"), source(8), tmp_path / "run")
    assert calls["init"][0]["project"] == "proj" and calls["init"][0]["id"] is None  # a new run: wandb's id
    assert calls["init"][0]["config"]["train"]["wandb_project"] == "proj"
    assert [step for step, _ in calls["log"]] == [4, 8, 8]  # two training log points, one evaluation
    assert "activations/topk-16/seed1/train/l0" in calls["log"][0][1]
    assert "activations/topk-16/seed0/eval/fvu" in calls["log"][2][1]
    assert calls["finish"] == [True]
    assert (tmp_path / "run" / "wandb" / "run_id").read_text().strip() == "abc123"


def test_wandb_missing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match="needs the wandb package"):
        train_run(run_config(4, wandb_project="proj"), source(4), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_real_wandb_in_offline_mode_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real wandb package (the test extra brings it with sae-lens), WANDB_MODE=offline: the run's
    metrics land in an offline run folder under <run>/wandb/ that `wandb sync` would upload later."""
    pytest.importorskip("wandb", reason="wandb is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    train_run(run_config(8, log_every=4, wandb_project="proj"), source(8), tmp_path / "run")
    runs = list((tmp_path / "run" / "wandb").rglob("offline-run-*"))
    assert runs, sorted(p.name for p in (tmp_path / "run" / "wandb").rglob("*"))
    run_id = (tmp_path / "run" / "wandb" / "run_id").read_text().strip()
    assert runs[0].name.endswith(run_id)
    assert list(runs[0].glob("run-*.wandb"))  # the records wandb sync uploads
