"""TopK activation (Gao et al. 2024): keep the k largest ReLU'd pre-activations of each token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from saeseeds.sae.outputs import Encoding
from saeseeds.sae.sparse_ops import gather_linear


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
