"""`ss.train` is what `saeseeds train` runs: every check of --out and of the sinks comes before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

import saeseeds as ss
from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.errors import ConfigError


def _config(**train: object) -> RunConfig:
    return RunConfig(data=DataConfig(source="synthetic"), train=TrainConfig(seeds=[0], **train),
                     saes=[SaeConfig(num_latents=16, k=2)])


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the data (for an LM run: loading the model) fails the test."""
    def refuse(cfg: RunConfig) -> None:
        raise AssertionError("the data was read before the run's checks")

    monkeypatch.setattr("saeseeds.api.training.build_source", refuse)


def test_a_missing_sink_package_is_refused_before_the_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_data: None
) -> None:
    monkeypatch.setattr("saeseeds.training.logging._available", lambda module: False)
    with pytest.raises(ConfigError, match="train.tensorboard = true needs the tensorboard package"):
        ss.train(_config(tensorboard=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_out_checks_come_before_the_data_is_read(tmp_path: Path, no_data: None) -> None:
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        ss.train(_config(), tmp_path / "run", resume=True, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        ss.train(_config(), tmp_path / "file" / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
