"""BatchTopK activation (Bussmann et al. 2024): the k·batch largest activations over the whole batch in training,
a single learned threshold at inference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from saeseeds.config.checks import check_float
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture
from saeseeds.sae.spec import per_latent, pre_activations
from saeseeds.sae.topk import TopK

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder


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


class BatchTopK(TopK):
    """k latents per token on average over the batch in training; a learned global threshold at inference.

    The threshold is a buffer `threshold` [num_latents] (all equal; -1 until estimated), updated as an EMA of
    each training batch's estimate during the forward pass, so a training-mode call alone keeps it current.
    Losses (FVU + AuxK) and the k checks are TopK's.
    """

    activation = "batchtopk"
    fields = (*TopK.fields, "batchtopk_threshold_momentum")
    saelens_names = ()  # SAELens saves trained BatchTopK SAEs as JumpReLU (see jumprelu.py)
    dictionary_learning_classes = ("BatchTopKSAE",)
    latent_unit_tensors = ("threshold",)

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """TopK's checks; momentum in [0, 1)."""
        super().validate(cfg, where, d_in)
        check_float(f"{where}.batchtopk_threshold_momentum", cfg.batchtopk_threshold_momentum, 0.0, 1.0, hi_open=True)

    def init_extra(self, sae: SparseAutoencoder, device: torch.device | str | None, dtype: torch.dtype) -> None:
        """The inference threshold buffer, -1 (not yet estimated)."""
        sae.register_buffer("threshold", torch.full((sae.num_latents,), -1.0, device=device, dtype=dtype))

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        """Batch-level top-k while training (and at inference until a threshold exists), else the threshold."""
        pre = pre_activations(sae, x_centered)
        batch_level = sae.training or bool(sae.threshold[0] < 0)
        enc, estimate = encode_batchtopk(pre, sae.cfg.k, sae.threshold[0], batch_level)
        if sae.training and estimate is not None:
            update_threshold(sae.threshold, estimate, sae.cfg.batchtopk_threshold_momentum)
        return enc

    def checkpoint_tensors(self, sae: SparseAutoencoder) -> dict[str, Tensor]:
        """The inference threshold."""
        return {"threshold": sae.threshold}

    def load_checkpoint_tensors(self, sae: SparseAutoencoder, tensors: Mapping[str, Tensor], source: str) -> None:
        """The threshold when the checkpoint has one (else it is estimated again in training mode)."""
        threshold = per_latent(tensors, "threshold", sae.num_latents, source)
        if threshold is not None:
            sae.threshold.copy_(threshold.to(sae.dtype))


@torch.no_grad()
def update_threshold(threshold: Tensor, estimate: Tensor, momentum: float) -> None:
    """Fold a batch's estimate into the running threshold (the first estimate replaces the -1 start)."""
    current = threshold[0]
    new = estimate if current < 0 else momentum * current + (1 - momentum) * estimate
    threshold.fill_(float(new))


BATCHTOPK = register_architecture("batchtopk", BatchTopK())
