"""Evaluation statistics accumulated over many batches: FVU with the whole-set mean, L0, firing frequency."""

from __future__ import annotations

import torch
from torch import Tensor

from saeseeds.sae.outputs import LatentCode


class FvuAccumulator:
    """FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖², with x̄ the per-dimension mean over every row seen (docs/definitions.md).

    Sums are kept in float64 so that Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖² stays accurate over millions of rows.
    """

    def __init__(self, d_in: int) -> None:
        self.d_in = d_in
        self.count = 0
        self.sse = 0.0
        self.sum = torch.zeros(d_in, dtype=torch.float64)
        self.sum_sq = 0.0

    def update(self, x: Tensor, x_hat: Tensor) -> None:
        """Add a batch of inputs and their reconstructions, both [batch, d_in]."""
        if x.shape != x_hat.shape or x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"expected x and x_hat of shape [batch, {self.d_in}], got {tuple(x.shape)} and {tuple(x_hat.shape)}")
        x64 = x.detach().to(torch.float64)
        self.sse += float((x64 - x_hat.detach().to(torch.float64)).pow(2).sum())
        self.sum += x64.sum(0).cpu()
        self.sum_sq += float(x64.pow(2).sum())
        self.count += x.shape[0]

    def total_variance(self) -> float:
        """Σ‖x − x̄‖² over everything seen."""
        if self.count == 0:
            raise ValueError("FVU of an empty evaluation set")
        return self.sum_sq - float(self.sum.pow(2).sum()) / self.count

    def value(self) -> float:
        """The fraction of variance unexplained; 1 − value() is the explained variance."""
        return self.sse / max(self.total_variance(), 1e-300)


class FiringCounter:
    """Per-latent count of tokens on which a latent is non-zero, and the mean L0 per token."""

    def __init__(self, num_latents: int) -> None:
        self.num_latents = num_latents
        self.counts = torch.zeros(num_latents, dtype=torch.int64)
        self.tokens = 0
        self.nonzero = 0

    def update(self, code: LatentCode) -> None:
        """Count the non-zero entries of a sparse code [batch, m]."""
        active = code.values != 0
        idx = code.indices[active].reshape(-1).cpu()
        self.counts += torch.bincount(idx, minlength=self.num_latents)
        self.tokens += code.values.shape[0]
        self.nonzero += int(active.sum())

    def frequency(self) -> Tensor:
        """Share of tokens on which each latent fired, [num_latents] float64."""
        return self.counts.to(torch.float64) / max(self.tokens, 1)

    def l0(self) -> float:
        """Mean number of non-zero latents per token."""
        return self.nonzero / max(self.tokens, 1)

    def dead(self) -> Tensor:
        """Latents that never fired on the tokens seen."""
        return self.counts == 0
