"""FVU's definition (whole-set mean) and the firing counter."""

from __future__ import annotations

import pytest
import torch

from saeseeds.sae import LatentCode
from saeseeds.sae.metrics import FiringCounter, FvuAccumulator


def test_predicting_the_mean_scores_zero_explained_variance() -> None:
    x = torch.randn(1000, 8) * torch.arange(1, 9) + 5
    acc = FvuAccumulator(8)
    for chunk in x.split(137):
        acc.update(chunk, x.mean(0).expand_as(chunk))
    assert acc.value() == pytest.approx(1.0, abs=1e-9)


def test_perfect_reconstruction_scores_one() -> None:
    x = torch.randn(300, 8)
    acc = FvuAccumulator(8)
    acc.update(x, x.clone())
    assert 1 - acc.value() == pytest.approx(1.0)


def test_uses_the_whole_set_mean_not_batch_means() -> None:
    # Two batches with different means; predicting each batch's own mean is better than the global mean.
    a, b = torch.randn(100, 4), torch.randn(100, 4) + 10
    acc = FvuAccumulator(4)
    acc.update(a, a.mean(0).expand_as(a))
    acc.update(b, b.mean(0).expand_as(b))
    x = torch.cat([a, b])
    expected = ((a - a.mean(0)).pow(2).sum() + (b - b.mean(0)).pow(2).sum()) / (x - x.mean(0)).pow(2).sum()
    assert acc.value() == pytest.approx(float(expected), rel=1e-6)


def test_firing_counter() -> None:
    code = LatentCode(torch.tensor([[1.0, 0.0], [2.0, 3.0]]), torch.tensor([[0, 1], [0, 2]]))
    counter = FiringCounter(4)
    counter.update(code)
    assert counter.frequency().tolist() == [1.0, 0.0, 0.5, 0.0]
    assert counter.l0() == 1.5
    assert counter.dead().tolist() == [False, True, False, True]
