"""AuxK (Gao et al. 2024): the top dead latents reconstruct the residual, which keeps them from staying dead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from saeseeds.config.checks import check_float, check_int
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.sparse_ops import gather_linear, sparse_decode

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder

AUXK_FIELDS = ("auxk_alpha", "auxk_k")
"""The SaeConfig fields AuxK reads."""


def auxk_loss(sae: SparseAutoencoder, x: Tensor, enc: Encoding, residual: Tensor, dead_mask: Tensor | None,
              decoder: Tensor | None = None) -> Tensor:
    """Normalised squared error of the dead latents' reconstruction of `residual`; scaled down when few are dead.
    `decoder`: the rows to differentiate through (default W_dec; rasae passes its factors' product)."""
    zero = x.new_zeros(())
    if dead_mask is None:
        return zero
    num_dead = int(dead_mask.sum())
    if num_dead == 0:
        return zero
    k_aux = min(sae.cfg.auxk_k or sae.d_in // 2, num_dead)
    masked = enc.pre_acts.detach().masked_fill(~dead_mask, float("-inf"))
    indices = masked.topk(k_aux, dim=-1, sorted=False).indices
    x_c = x - sae.b_dec
    if enc.pre_acts.requires_grad:
        values = enc.pre_acts.gather(-1, indices).relu()
    else:
        values = gather_linear(x_c, sae.encoder.weight, sae.encoder.bias, indices, enc.pre_acts).relu()
    e_hat = sparse_decode(values, indices, sae.W_dec if decoder is None else decoder)
    denom = (residual - residual.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
    scale = min(num_dead / k_aux, 1.0)
    return scale * (e_hat - residual).pow(2).sum() / denom


def validate_auxk(cfg: SaeConfig, where: str) -> None:
    """auxk_alpha >= 0 and auxk_k >= 0 (0 means d_in // 2)."""
    check_float(f"{where}.auxk_alpha", cfg.auxk_alpha, 0.0, note="0 disables AuxK")
    check_int(f"{where}.auxk_k", cfg.auxk_k, 0, note="0 means d_in // 2")
