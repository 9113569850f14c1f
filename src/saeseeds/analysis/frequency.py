"""Per-latent firing frequency on held-out activations, and any per-latent value binned by frequency."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from saeseeds.errors import DataError
from saeseeds.sae.metrics import FiringCounter
from saeseeds.sae.model import SparseAutoencoder


def firing_frequency(
    sae: SparseAutoencoder, batches: Iterable[torch.Tensor | Mapping[str, torch.Tensor]], *, hookpoint: str = ""
) -> np.ndarray:
    """Share of tokens on which each latent of `sae` is non-zero, over the given raw activation batches.

    Batches are `[tokens, d_in]` tensors or hookpoint -> tensor mappings (then `hookpoint` picks one).
    Counting is `saeseeds.sae.metrics.FiringCounter`, the trainer's own counter.
    """
    counter = FiringCounter(sae.num_latents)
    device = next(iter(sae.parameters())).device
    with torch.no_grad():
        for batch in batches:
            x = _pick(batch, hookpoint)
            if x.ndim != 2 or x.shape[1] != sae.d_in:
                raise DataError(
                    f"activation batch has shape {tuple(x.shape)}; the SAE expects [tokens, {sae.d_in}]"
                )
            counter.update(sae.encode(x.to(device, torch.float32)))
    if counter.tokens == 0:
        raise DataError("no activation rows to measure firing frequency on")
    return counter.frequency().numpy()


def _pick(batch: torch.Tensor | Mapping[str, torch.Tensor], hookpoint: str) -> torch.Tensor:
    """The tensor of one hookpoint from a batch (the batch itself when it is a tensor)."""
    if isinstance(batch, Mapping):
        if hookpoint in batch:
            return torch.as_tensor(batch[hookpoint])
        if len(batch) == 1:
            return torch.as_tensor(next(iter(batch.values())))
        raise DataError(f"batch has hookpoints {sorted(batch)}; none is {hookpoint!r}")
    return torch.as_tensor(batch)


def binned_by_frequency(
    frequency: np.ndarray, values: np.ndarray, *, bins: int = 12
) -> dict[str, list[float]]:
    """Mean and count of `values` in log-spaced firing-frequency bins (dead latents in their own bin)."""
    frequency = np.asarray(frequency, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    alive = frequency > 0
    result: dict[str, list[float]] = {"bin_low": [], "bin_high": [], "mean": [], "count": []}
    if (~alive).any():
        result["bin_low"].append(0.0)
        result["bin_high"].append(0.0)
        result["mean"].append(float(np.nanmean(values[~alive])))
        result["count"].append(float((~alive).sum()))
    if alive.any():
        lo, hi = np.log10(frequency[alive].min()), np.log10(frequency[alive].max())
        edges = np.logspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)
        which = np.clip(np.searchsorted(edges, frequency[alive], side="right") - 1, 0, bins - 1)
        vals = values[alive]
        for b in range(bins):
            sel = which == b
            if sel.any():
                result["bin_low"].append(float(edges[b]))
                result["bin_high"].append(float(edges[b + 1]))
                result["mean"].append(float(np.nanmean(vals[sel])))
                result["count"].append(float(sel.sum()))
    return result
