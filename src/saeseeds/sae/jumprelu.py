"""JumpReLU activation (Rajamanoharan et al. 2024): per-latent thresholds trained by straight-through estimators."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from saeseeds.config.checks import check_float, check_int
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture
from saeseeds.sae.spec import ArchitectureSpec, SparsityPenalty, pre_activations, require

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder

MAX_LOG_THRESHOLD = 20.0
"""After every step log-thresholds are clamped to at most this, so exp() stays finite."""


def _rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1 on (-1/2, 1/2)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFn(torch.autograd.Function):
    """z · H(z − θ); d/dθ uses the kernel estimate −θ/ε · K((z − θ)/ε), d/dz is H(z − θ).

    θ broadcasts over the token axis (`[n]` for one SAE, `[S, 1, n]` for a seed stack): its gradient is summed
    back to θ's shape."""

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
        grad_thr = (-(threshold / eps) * _rectangle((pre - threshold) / eps) * grad).sum_to_size(threshold.shape)
        return grad_pre, grad_thr, None


class StepFn(torch.autograd.Function):
    """H(z − θ); d/dθ uses −1/ε · K((z − θ)/ε); no gradient to z (the L0 penalty trains only thresholds).

    θ broadcasts over tokens as in `JumpReLUFn`."""

    @staticmethod
    def forward(ctx, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_thr = (-(1.0 / eps) * _rectangle((pre - threshold) / eps) * grad).sum_to_size(threshold.shape)
        return None, grad_thr, None


def encode_jumprelu(pre_acts: Tensor, log_threshold: Tensor, bandwidth: float) -> Encoding:
    """Dense JumpReLU activations and the per-token L0 penalty (straight-through in the thresholds)."""
    threshold = log_threshold.exp()
    dense = JumpReLUFn.apply(pre_acts, threshold, bandwidth)
    l0 = StepFn.apply(pre_acts, threshold, bandwidth).sum(-1).mean()
    return Encoding(None, None, dense, pre_acts, l0)


class JumpRelu(ArchitectureSpec):
    """Per-latent thresholds (parameter `log_threshold`) trained with a straight-through L0 penalty."""

    activation = "jumprelu"
    fields = ("jumprelu_init_threshold", "jumprelu_bandwidth", "l0_coefficient", "l0_warmup_steps")
    saelens_names = ("jumprelu", "batchtopk")  # SAELens saves trained BatchTopK SAEs as JumpReLU
    dictionary_learning_classes = ("JumpReluAutoEncoder",)
    latent_unit_tensors = ("threshold",)

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """Threshold and bandwidth > 0; L0 coefficient and warm-up >= 0."""
        check_float(f"{where}.jumprelu_init_threshold", cfg.jumprelu_init_threshold, 0.0, lo_open=True)
        check_float(f"{where}.jumprelu_bandwidth", cfg.jumprelu_bandwidth, 0.0, lo_open=True)
        check_float(f"{where}.l0_coefficient", cfg.l0_coefficient, 0.0)
        check_int(f"{where}.l0_warmup_steps", cfg.l0_warmup_steps, 0, note="0 means 5% of training")

    def init_extra(self, sae: SparseAutoencoder, device: torch.device | str | None, dtype: torch.dtype) -> None:
        """`log_threshold` [num_latents], every entry log(jumprelu_init_threshold)."""
        init = torch.full((sae.num_latents,), math.log(sae.cfg.jumprelu_init_threshold))
        sae.log_threshold = nn.Parameter(init.to(device=device, dtype=dtype))

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        """JumpReLU of the pre-activations, with the L0 penalty."""
        return encode_jumprelu(pre_activations(sae, x_centered), sae.log_threshold, sae.cfg.jumprelu_bandwidth)

    def sparsity_penalty(self, cfg: SaeConfig) -> SparsityPenalty:
        """The L0 coefficient and its warm-up."""
        return SparsityPenalty(cfg.l0_coefficient, cfg.l0_warmup_steps)

    def post_step(self, sae: SparseAutoencoder) -> None:
        """Keep exp(log_threshold) finite."""
        sae.log_threshold.clamp_(max=MAX_LOG_THRESHOLD)

    def checkpoint_tensors(self, sae: SparseAutoencoder) -> dict[str, Tensor]:
        """The thresholds themselves (sparsify/SAELens store `threshold`, not its log)."""
        return {"threshold": sae.log_threshold.exp()}

    def load_checkpoint_tensors(self, sae: SparseAutoencoder, tensors: Mapping[str, Tensor], source: str) -> None:
        """log of the (required) threshold, clamped above 0."""
        threshold = require(tensors, "threshold", sae.num_latents, source, "jumprelu")
        tiny = torch.finfo(sae.dtype).tiny
        sae.log_threshold.copy_(threshold.to(sae.dtype).clamp_min(tiny).log())


JUMPRELU = register_architecture("jumprelu", JumpRelu())
