"""BatchTopK activation (Bussmann et al. 2024): the k·batch largest activations over the whole batch in training,
a single learned threshold at inference."""

from __future__ import annotations

import torch
from torch import Tensor

from saeseeds.sae.outputs import Encoding


def encode_batchtopk(pre_acts: Tensor, k: int, threshold: Tensor, training: bool) -> tuple[Encoding, Tensor | None]:
    """Return the encoding and, in training, the batch's estimate of the inference threshold.

    The estimate is the smallest positive activation kept by the batch-level top-k (Bussmann et al.);
    the caller folds it into a running average.
    """
    acts = pre_acts.relu()
    zero = pre_acts.new_zeros(())
    if not training:
        dense = acts * (pre_acts > threshold)
        return Encoding(None, None, dense, pre_acts, zero), None
    flat = acts.flatten()
    keep = min(k * acts.shape[0], flat.numel())
    top = flat.topk(keep, sorted=False)
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(0, top.indices, True)
    dense = (flat * mask).view_as(acts)
    positive = top.values[top.values > 0]
    estimate = positive.min().detach() if positive.numel() else None
    return Encoding(None, None, dense, pre_acts, zero), estimate
