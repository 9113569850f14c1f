"""Sparse kernels over S stacked SAEs ([S, num_latents, d] weights): one gather/scatter for all seeds at once.

Seed s's latent i is row s·num_latents + i of the flattened [S·num_latents, d] weight, so every kernel of
`sparse_ops` (embedding_bag gathers, the sparse scatter of outer products) runs once on the whole stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from saeseeds.sae.sparse_ops import scatter_outer


def flat_rows(indices: Tensor, num_latents: int) -> Tensor:
    """[S, B, k] per-seed latent indices as rows of the flattened [S·num_latents, d] stack, [S·B, k]."""
    seeds = indices.shape[0]
    offsets = torch.arange(seeds, device=indices.device).mul_(num_latents).view(seeds, 1, 1)
    return (indices + offsets).reshape(-1, indices.shape[-1])


class _StackedGatherLinear(torch.autograd.Function):
    """values[s, b, j] = x[s, b] · W[s, idx] + bias[s, idx] from precomputed pre-activations; sparse backward.

    The stacked counterpart of `sparse_ops._GatherLinear`: gradients touch only the selected rows of each seed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, indices: Tensor, gathered: Tensor,  # type: ignore[override]
                kept: dict[str, Tensor] | None) -> Tensor:
        ctx.save_for_backward(x, weight, indices)
        ctx.kept = kept
        return gathered.clone()

    @staticmethod
    def backward(ctx, grad_values: Tensor):  # type: ignore[override]
        x, weight, indices = ctx.saved_tensors
        seeds, num_latents, d = weight.shape
        rows = flat_rows(indices, num_latents)
        coeffs = grad_values.to(weight.dtype).reshape(rows.shape).contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flat_w = weight.reshape(seeds * num_latents, d)
            grad_x = F.embedding_bag(rows, flat_w, per_sample_weights=coeffs, mode="sum").view(x.shape).to(x.dtype)
        if ctx.needs_input_grad[1]:
            flat_x = x.to(weight.dtype).reshape(-1, d)
            if ctx.kept is None:
                grad_w = scatter_outer(rows, coeffs, flat_x, seeds * num_latents).view(weight.shape)
            else:  # accumulate straight into weight.grad, a buffer kept between steps (see `accumulate_outer`)
                accumulate_outer(weight, rows, coeffs, flat_x, ctx.kept)
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(seeds * num_latents, dtype=weight.dtype, device=weight.device)
            grad_b.index_add_(0, rows.reshape(-1), coeffs.reshape(-1))
            grad_b = grad_b.view(seeds, num_latents)
        return grad_x, grad_w, grad_b, None, None, None


def accumulate_outer(weight: Tensor, rows: Tensor, coeffs: Tensor, flat_x: Tensor, kept: dict[str, Tensor]) -> None:
    """weight.grad += Σ coeffs[r, j] · x[r] into rows[r, j], in place; an absent grad becomes a zeroed kept buffer.

    On the CPU a fresh [S·n, d] gradient each step cost ~9× the sparse product itself (first-touch pages);
    writing into a buffer kept in `kept` avoids it. The sum equals `scatter_outer`'s bit for bit.
    """
    if weight.grad is None:
        buffer = kept.get("weight_grad")
        if buffer is None or buffer.shape != weight.shape or buffer.dtype != weight.dtype:
            buffer = kept["weight_grad"] = torch.empty_like(weight)
        weight.grad = buffer.zero_()
    count, k = rows.shape
    cols = torch.arange(count, device=rows.device).repeat_interleave(k)
    sparse = torch.sparse_coo_tensor(
        torch.stack([rows.reshape(-1), cols]), coeffs.reshape(-1), (weight.shape[0] * weight.shape[1], count),
        dtype=flat_x.dtype, device=flat_x.device, check_invariants=False,
    )
    weight.grad.view(-1, weight.shape[-1]).addmm_(sparse, flat_x)


def stacked_gather_linear(x: Tensor, weight: Tensor, bias: Tensor, indices: Tensor, pre_acts: Tensor,
                          kept: dict[str, Tensor] | None = None) -> Tensor:
    """Differentiable gather of `pre_acts` [S, B, n] at `indices` [S, B, k]; x [S, B, d], weight [S, n, d], bias [S, n].

    With `kept` (CPU) the weight gradient is accumulated in place into `weight.grad` (see `accumulate_outer`).
    """
    gathered = pre_acts.gather(-1, indices)
    return _StackedGatherLinear.apply(x, weight, bias, indices, gathered, kept)


class _StackedDecode(torch.autograd.Function):
    """`stacked_sparse_decode` whose decoder gradient goes in place into `W_dec.grad` (a kept buffer, CPU).

    Forward and the values' gradient are embedding_bag's own kernels; the decoder gradient is the sparse
    product of `accumulate_outer` instead of embedding_bag's fresh dense [S·n, d] tensor.
    """

    @staticmethod
    def forward(ctx, values: Tensor, indices: Tensor, W_dec: Tensor, kept: dict[str, Tensor]) -> Tensor:  # type: ignore[override]
        seeds, num_latents, d = W_dec.shape
        rows = flat_rows(indices, num_latents)
        flat_w = W_dec.reshape(seeds * num_latents, d)
        weights = values.to(W_dec.dtype).reshape(-1).contiguous()
        offsets = torch.arange(0, rows.numel(), rows.shape[1], device=rows.device)
        out, offset2bag, _, _ = torch.ops.aten._embedding_bag(
            flat_w, rows.reshape(-1), offsets, False, 0, False, weights, False, -1
        )
        ctx.save_for_backward(W_dec, rows, offsets, offset2bag, weights)
        ctx.kept = kept
        ctx.values_dtype = values.dtype
        return out.view(seeds, -1, d)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        W_dec, rows, offsets, offset2bag, weights = ctx.saved_tensors
        seeds, num_latents, d = W_dec.shape
        grad = grad_out.to(W_dec.dtype).reshape(-1, d).contiguous()
        grad_values = None
        if ctx.needs_input_grad[0]:
            flat_w = W_dec.reshape(seeds * num_latents, d)
            grad_values = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad, flat_w, rows.reshape(-1), offsets, offset2bag, 0, -1
            ).view(seeds, -1, rows.shape[1]).to(ctx.values_dtype)
        if ctx.needs_input_grad[2]:
            accumulate_outer(W_dec, rows, weights.view(rows.shape), grad, ctx.kept)
        return grad_values, None, None, None


def stacked_sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor, kept: dict[str, Tensor] | None = None) -> Tensor:
    """Σ_j values[s, b, j] · W_dec[s, indices[s, b, j]] as one embedding_bag over the stack, [S, B, d].

    With `kept` (CPU) the decoder gradient is accumulated in place into `W_dec.grad` (`_StackedDecode`).
    """
    if kept is not None and torch.is_grad_enabled() and W_dec.requires_grad:
        return _StackedDecode.apply(values, indices, W_dec, kept)
    seeds, num_latents, d = W_dec.shape
    rows = flat_rows(indices, num_latents)
    weights = values.to(W_dec.dtype).reshape(rows.shape)
    out = F.embedding_bag(rows, W_dec.reshape(seeds * num_latents, d), per_sample_weights=weights, mode="sum")
    return out.view(seeds, -1, d)


def stacked_fired(indices: Tensor, active: Tensor, num_latents: int) -> Tensor:
    """[S, num_latents] bool: latents selected with a positive value on some token (no host synchronisation)."""
    seeds = indices.shape[0]
    counts = torch.zeros(seeds * num_latents, dtype=torch.int32, device=indices.device)
    counts.index_add_(0, flat_rows(indices, num_latents).reshape(-1), active.reshape(-1).to(torch.int32))
    return (counts > 0).view(seeds, num_latents)
