"""JumpReLU activation (Rajamanoharan et al. 2024): per-latent thresholds trained by straight-through estimators."""

from __future__ import annotations

import torch
from torch import Tensor

from saeseeds.sae.outputs import Encoding


def _rectangle(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z · H(z − θ); d/dθ uses the kernel estimate −θ/ε · K((z − θ)/ε), d/dz is H(z − θ)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        grad_thr = (-(threshold / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return grad_pre, grad_thr, None


class _Step(torch.autograd.Function):
    """H(z − θ); d/dθ uses −1/ε · K((z − θ)/ε); no gradient to z (the L0 penalty trains only thresholds)."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_thr = (-(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad).sum(0)
        return None, grad_thr, None


def encode_jumprelu(pre_acts: Tensor, log_threshold: Tensor, bandwidth: float) -> Encoding:
    """Dense JumpReLU activations and the per-token L0 penalty (straight-through in the thresholds)."""
    threshold = log_threshold.exp()
    dense = _JumpReLU.apply(pre_acts, threshold, bandwidth)
    l0 = _Step.apply(pre_acts, threshold, bandwidth).sum(-1).mean()
    return Encoding(None, None, dense, pre_acts, l0)
