"""Held-out evaluation of one SAE: FVU with the whole-set mean, L0, dead fraction, firing frequencies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from saeseeds.sae.metrics import FiringCounter, FvuAccumulator
from saeseeds.sae.model import SparseAutoencoder


class EvalMetrics(NamedTuple):
    """Metrics of one SAE on an evaluation set (docs/definitions.md)."""

    fvu: float
    explained_variance: float
    l0: float
    dead_fraction: float
    tokens: int

    def as_dict(self) -> dict[str, float | int]:
        return self._asdict()


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, batches: Iterable[Tensor], scale: float = 1.0) -> tuple[EvalMetrics, Tensor]:
    """Evaluate on `batches` of raw activations (multiplied by `scale` before encoding); also return frequencies."""
    was_training = sae.training
    sae.eval()
    fvu = FvuAccumulator(sae.d_in)
    firing = FiringCounter(sae.num_latents)
    for batch in batches:
        x = batch.to(device=sae.device, dtype=sae.dtype) * scale
        code = sae.encode(x)
        fvu.update(x, sae.decode(code))
        firing.update(code)
    sae.train(was_training)
    value = fvu.value()
    metrics = EvalMetrics(value, 1.0 - value, firing.l0(), float(firing.dead().double().mean()), firing.tokens)
    return metrics, firing.frequency()
