"""The run's stream for pooling: the run's batches in order, an LM pass computed once even when consumers stop
early, replayed as further epochs; and the source must still describe the run's data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saeseeds.config import DataConfig, RunConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import DataError
from saeseeds.pooling.stream import RunStream
from saeseeds.training.run_dir import Run


class Counting:
    """An LM-like source: 4 forward batches of 6 rows; counts the forwards."""

    def __init__(self) -> None:
        self.forwards = 0

    def __iter__(self):
        for i in range(4):
            self.forwards += 1
            yield {"h": torch.full((6, 2), float(i))}


def test_lm_pass_is_computed_once_and_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    source = Counting()
    monkeypatch.setattr("saeseeds.data.sources.build_source",
                        lambda cfg: SourcePair(source, [], {"token_fingerprint": "abc"}))
    cfg = RunConfig(data=DataConfig(source="lm", hookpoint="h"), train=TrainConfig(batch_size=4))
    stream = RunStream(Run(Path("run"), {"data": {"token_fingerprint": "abc"}}, config=cfg), "h")
    first = torch.cat(list(stream.batches(8)))  # 2 batches: stops inside the second forward batch
    assert source.forwards == 2
    rows = torch.cat(list(stream.batches(48)))  # 12 batches = 2 passes over the 24 rows
    assert source.forwards == 4  # each forward batch computed once
    expected = torch.cat([torch.full((6, 2), float(i)) for i in range(4)] * 2)
    assert torch.equal(rows, expected) and torch.equal(first, expected[:8])


def test_a_source_that_changed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("saeseeds.data.sources.build_source",
                        lambda cfg: SourcePair(Counting(), [], {"token_fingerprint": "new"}))
    cfg = RunConfig(data=DataConfig(source="lm", hookpoint="h"), train=TrainConfig(batch_size=4))
    stream = RunStream(Run(Path("run"), {"data": {"token_fingerprint": "old"}}, config=cfg), "h")
    with pytest.raises(DataError, match="token_fingerprint"):
        next(stream.batches(8))
