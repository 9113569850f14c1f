"""Sparse encoder/decoder kernels: gradients touch only the selected latents, never a dense [batch, num_latents]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _GatherLinear(torch.autograd.Function):
    """values[b, j] = x[b] · W[idx[b, j]] + bias[idx[b, j]], computed from precomputed pre-activations.

    The backward is sparse: grad_x gathers the selected rows of W, grad_W and grad_bias scatter into
    the selected rows only, so the cost is O(batch · k · d_in) instead of O(batch · num_latents · d_in).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, indices: Tensor, gathered: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight, indices)
        return gathered.clone()

    @staticmethod
    def backward(ctx, grad_values: Tensor):  # type: ignore[override]
        x, weight, indices = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        grad_values = grad_values.to(weight.dtype).contiguous()
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(indices, weight, per_sample_weights=grad_values, mode="sum").to(x.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = scatter_outer(indices, grad_values, x.to(weight.dtype), weight.shape[0])
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
            grad_b.index_add_(0, indices.reshape(-1), grad_values.reshape(-1))
        return grad_x, grad_w, grad_b, None, None


def scatter_outer(indices: Tensor, coeffs: Tensor, x: Tensor, num_rows: int) -> Tensor:
    """Σ_{b,j} coeffs[b,j] · x[b] added into row indices[b,j] of a [num_rows, d] matrix, as a sparse product."""
    batch, k = indices.shape
    rows = indices.reshape(-1)
    cols = torch.arange(batch, device=indices.device).repeat_interleave(k)
    sparse = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), coeffs.reshape(-1), (num_rows, batch), dtype=x.dtype, device=x.device,
        check_invariants=False,
    )
    return torch.sparse.mm(sparse, x)


def gather_linear(x: Tensor, weight: Tensor, bias: Tensor, indices: Tensor, pre_acts: Tensor) -> Tensor:
    """Differentiable gather of `pre_acts` at `indices` whose backward is sparse (see `_GatherLinear`)."""
    gathered = pre_acts.gather(-1, indices)
    return _GatherLinear.apply(x, weight, bias, indices, gathered)


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Σ_j values[b, j] · W_dec[indices[b, j]]: a gather-and-sum that never forms a dense [batch, num_latents]."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")
