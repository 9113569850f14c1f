"""TopK activation (Gao et al. 2024): keep the k largest ReLU'd pre-activations of each token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from saeseeds.sae.auxk import AUXK_FIELDS, auxk_loss, validate_auxk
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture
from saeseeds.sae.sparse_ops import gather_linear
from saeseeds.sae.spec import ArchitectureSpec, validate_k

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder


def encode_topk(x_centered: Tensor, weight: Tensor, bias: Tensor, k: int) -> Encoding:
    """Top-k latents per token; the dense pre-activation GEMM runs without autograd, gradients are sparse."""
    with torch.no_grad():
        pre_acts = F.linear(x_centered, weight, bias)
        indices = pre_acts.relu().topk(k, dim=-1, sorted=False).indices
    if torch.is_grad_enabled() and (weight.requires_grad or x_centered.requires_grad):
        values = gather_linear(x_centered, weight, bias, indices, pre_acts).relu()
    else:
        values = pre_acts.gather(-1, indices).relu()
    zero = pre_acts.new_zeros(())
    return Encoding(values, indices, None, pre_acts, zero)


class TopK(ArchitectureSpec):
    """Exactly k latents per token, trained on FVU plus AuxK; sparse codes end to end (sparsify's layout)."""

    activation = "topk"
    fields = ("k", *AUXK_FIELDS)
    saelens_names = ("topk",)
    dictionary_learning_classes = ("AutoEncoderTopK",)
    latent_unit_tensors = ()
    sparsify_k = True

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """1 <= k <= num_latents; AuxK weights >= 0."""
        validate_k(cfg, where, d_in)
        validate_auxk(cfg, where)

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        """The sparse top-k code."""
        return encode_topk(x_centered, sae.encoder.weight, sae.encoder.bias, sae.cfg.k)

    def reconstruction_loss(self, fvu: Tensor, residual: Tensor) -> Tensor:
        """FVU, as in sparsify."""
        return fvu

    def aux_loss(
        self, sae: SparseAutoencoder, x: Tensor, enc: Encoding, residual: Tensor, dead_mask: Tensor | None
    ) -> Tensor:
        """AuxK over the dead latents."""
        return auxk_loss(sae, x, enc, residual, dead_mask)


TOPK = register_architecture("topk", TopK())
