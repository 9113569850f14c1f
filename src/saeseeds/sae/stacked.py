"""S SAEs of one configuration as one module with stacked parameters ([S, num_latents, d_in]), for batched training.

The math is `SparseAutoencoder.forward` per seed — one batched GEMM for all encoders, batched top-k, one sparse
decoder gather — and the members' own SAEs become views into the stacked tensors, so evaluation, checkpoints and
state files keep reading them unchanged (docs/performance.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from saeseeds.errors import ConfigError
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.sae.stacked_ops import stacked_fired, stacked_gather_linear, stacked_sparse_decode

STACKED_ARCHITECTURES = ("topk", "batchtopk", "relu", "jumprelu")
"""Architectures with a batched path; AuxK applies to the first two (as in their per-member specs)."""
_SPARSE = ("topk",)
_FVU_LOSS = ("topk", "batchtopk")


class StackedOutput(NamedTuple):
    """One training forward of the stack: every loss term per seed, [S], and the latents that fired, [S, n]."""

    fvu: Tensor
    recon_loss: Tensor
    sparsity_loss: Tensor
    aux_loss: Tensor
    l0: Tensor
    fired: Tensor


def _name(member_name: str) -> str:
    """Attribute name of a stacked tensor ('encoder.weight' -> 'encoder_weight')."""
    return member_name.replace(".", "_")


class StackedSAE(nn.Module):
    """The parameters and buffers of S same-configuration SAEs stacked on a new leading seed axis.

    Construction moves the values in and turns every member tensor into a view of its slice, so the member
    SAEs always show the stacked values (and `load_state_dict` on a member writes into the stack).
    """

    def __init__(self, saes: list[SparseAutoencoder]) -> None:
        super().__init__()
        first = saes[0]
        arch = first.architecture
        if arch not in STACKED_ARCHITECTURES:
            raise ConfigError(
                f"train.batched_seeds: architecture {arch!r} has no batched path "
                f"(supported: {', '.join(STACKED_ARCHITECTURES)}); set train.batched_seeds = false"
            )
        for sae in saes[1:]:
            if sae.cfg != first.cfg or sae.d_in != first.d_in or sae.dtype != first.dtype or sae.device != first.device:
                raise ValueError("a seed stack needs SAEs of one configuration, d_in, dtype and device")
        self.cfg = first.cfg
        self.architecture = arch
        self.d_in = first.d_in
        self.num_latents = first.num_latents
        self.seeds = len(saes)
        self._buffers_kept: dict[str, Tensor] = {}
        self._grads_kept: dict[str, dict[str, Tensor]] = {}
        self.param_names = [name for name, _ in first.named_parameters()]
        self.buffer_names = [name for name, _ in first.named_buffers()]
        for name in self.param_names:
            param = nn.Parameter(torch.stack([sae.get_parameter(name).detach() for sae in saes]))
            setattr(self, _name(name), param)
            for s, sae in enumerate(saes):
                sae.get_parameter(name).data = param.data[s]
        for name in self.buffer_names:
            stacked = torch.stack([sae.get_buffer(name) for sae in saes])
            self.register_buffer(_name(name), stacked)
            for s, sae in enumerate(saes):
                owner, _, leaf = name.rpartition(".")
                module = sae.get_submodule(owner) if owner else sae
                module._buffers[leaf] = stacked[s]

    def stacked(self, member_name: str) -> Tensor:
        """The stacked parameter or buffer of a member tensor name ('encoder.weight', 'threshold', ...)."""
        return getattr(self, _name(member_name))

    # ---------------------------------------------------------------- forward

    def forward(self, x: Tensor, dead_mask: Tensor | None = None, aux_k: int = 0) -> StackedOutput:
        """Every seed on the shared batch x [B, d_in]; AuxK over `dead_mask` [S, n] with at most `aux_k` latents."""
        W_enc, b_enc = self.stacked("encoder.weight"), self.stacked("encoder.bias")
        W_dec, b_dec = self.stacked("W_dec"), self.stacked("b_dec")
        x = x.to(W_dec.dtype)
        xc = x.unsqueeze(0) - b_dec.unsqueeze(1)  # [S, B, d]
        zero = x.new_zeros(self.seeds)
        if self.architecture in _SPARSE:
            with torch.no_grad():
                pre = self._pre_acts(xc, W_enc, b_enc)
                # topk of the raw pre-activations: the positive ones selected are those of relu(pre).topk,
                # and any other pick is relu'd to 0 (no value, no gradient); saves a [S, B, n] buffer.
                indices = pre.topk(self.cfg.k, dim=-1, sorted=False).indices
            if torch.is_grad_enabled():
                values = stacked_gather_linear(xc, W_enc, b_enc, indices, pre, self._kept_grads(W_enc, "encoder")).relu()
            else:
                values = pre.gather(-1, indices).relu()
            sae_out = stacked_sparse_decode(values, indices, W_dec, self._kept_grads(W_dec, "decoder")) + b_dec.unsqueeze(1)
            positive = values > 0
            l0 = positive.sum(-1).to(x.dtype).mean(-1)
            fired = stacked_fired(indices, positive, self.num_latents)
            sparsity = zero
        else:
            pre = torch.baddbmm(b_enc.unsqueeze(1), xc, W_enc.transpose(1, 2))
            dense, sparsity = self._dense_code(pre, W_dec)
            sae_out = torch.bmm(dense, W_dec) + b_dec.unsqueeze(1)
            nonzero = dense > 0
            l0 = nonzero.sum(-1).to(x.dtype).mean(-1)
            fired = nonzero.any(1)
        residual = x.unsqueeze(0) - sae_out
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        fvu = residual.pow(2).sum((1, 2)) / total_variance
        recon = fvu if self.architecture in _FVU_LOSS else residual.pow(2).sum(-1).mean(-1)
        aux = zero
        if aux_k > 0 and dead_mask is not None and self.architecture in _FVU_LOSS:
            aux = self._auxk(x, xc, pre, residual.detach(), dead_mask, aux_k)
        return StackedOutput(fvu, recon, sparsity, aux, l0, fired)

    def _dense_code(self, pre: Tensor, W_dec: Tensor) -> tuple[Tensor, Tensor]:
        """Dense activations [S, B, n] and the per-seed sparsity term of relu, jumprelu and batchtopk."""
        if self.architecture == "relu":
            dense = pre.relu()
            return dense, (dense * W_dec.norm(dim=-1).unsqueeze(1)).sum(-1).mean(-1)
        if self.architecture == "jumprelu":
            from saeseeds.sae.jumprelu import (  # lazily: registration order stays the registry's
                JumpReLUFn,
                StepFn,
            )

            threshold = self.stacked("log_threshold").exp().unsqueeze(1)
            bandwidth = self.cfg.jumprelu_bandwidth
            dense = JumpReLUFn.apply(pre, threshold, bandwidth)
            return dense, StepFn.apply(pre, threshold, bandwidth).sum(-1).mean(-1)
        return self._batchtopk(pre), pre.new_zeros(self.seeds)

    def _batchtopk(self, pre: Tensor) -> Tensor:
        """Batch-level top-k per seed, folding each seed's threshold estimate into its buffer on the device."""
        acts = pre.relu()
        flat = acts.flatten(1)
        keep = min(self.cfg.k * acts.shape[1], flat.shape[1])
        top = flat.topk(keep, dim=-1, sorted=False)
        mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top.indices, True)
        dense = (flat * mask).view_as(acts)
        if self.training:
            with torch.no_grad():
                values = top.values.detach()
                positive = values > 0
                estimate = values.masked_fill(~positive, float("inf")).amin(-1)
                threshold = self.stacked("threshold")
                current = threshold[:, 0]
                momentum = self.cfg.batchtopk_threshold_momentum
                blended = torch.where(current < 0, estimate, momentum * current + (1 - momentum) * estimate)
                new = torch.where(positive.any(-1), blended, current)
                threshold.copy_(new.to(threshold.dtype).unsqueeze(1).expand_as(threshold))
        return dense

    def _auxk(self, x: Tensor, xc: Tensor, pre: Tensor, residual: Tensor, dead: Tensor, aux_k: int) -> Tensor:
        """AuxK per seed: its min(aux_k, #dead) best dead latents reconstruct its residual; 0 where none is dead."""
        W_enc, b_enc, W_dec = self.stacked("encoder.weight"), self.stacked("encoder.bias"), self.stacked("W_dec")
        num_dead = dead.sum(-1)
        masked = pre.detach().masked_fill(~dead.unsqueeze(1), float("-inf"))
        indices = masked.topk(aux_k, dim=-1, sorted=True).indices
        keep = torch.arange(aux_k, device=x.device) < num_dead.clamp(max=aux_k).view(-1, 1, 1)
        if pre.requires_grad:
            values = pre.gather(-1, indices).relu()
        else:
            values = stacked_gather_linear(xc, W_enc, b_enc, indices, pre, self._kept_grads(W_enc, "encoder")).relu()
        e_hat = stacked_sparse_decode(values * keep, indices, W_dec, self._kept_grads(W_dec, "decoder"))
        denom = (residual - residual.mean(1, keepdim=True)).pow(2).sum((1, 2)).clamp_min(torch.finfo(x.dtype).tiny)
        loss = (e_hat - residual).pow(2).sum((1, 2)) / denom
        return torch.where(num_dead > 0, loss, torch.zeros_like(loss))

    # ---------------------------------------------------------------- decoder norm, clipping, post-step

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove each decoder gradient row's component along its (unit) decoder row, every seed at once."""
        W_dec = self.stacked("W_dec")
        if W_dec.grad is None:
            return
        if W_dec.device.type != "cpu":
            rows = W_dec / W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            W_dec.grad -= (W_dec.grad * rows).sum(-1, keepdim=True) * rows
            return
        rows, product = self._scratch("rows", W_dec.shape, W_dec), self._scratch("product", W_dec.shape, W_dec)
        torch.div(W_dec, W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12), out=rows)
        parallel = torch.mul(W_dec.grad, rows, out=product).sum(-1, keepdim=True)
        W_dec.grad -= torch.mul(parallel, rows, out=product)

    def _pre_acts(self, xc: Tensor, W_enc: Tensor, b_enc: Tensor) -> Tensor:
        """(x − b_dec) W_encᵀ + b_enc for every seed, [S, B, n]: one batched GEMM (into a kept buffer on the CPU)."""
        if xc.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
            return torch.baddbmm(b_enc.unsqueeze(1), xc, W_enc.transpose(1, 2))
        out = self._scratch("pre", (self.seeds, xc.shape[1], self.num_latents), W_enc)
        return torch.baddbmm(b_enc.unsqueeze(1), xc, W_enc.transpose(1, 2), out=out)

    def _kept_grads(self, weight: Tensor, name: str) -> dict[str, Tensor] | None:
        """Where the sparse backward keeps `weight`'s gradient buffer between steps (CPU only: on CUDA the caching
        allocator reuses memory already)."""
        return self._grads_kept.setdefault(name, {}) if weight.device.type == "cpu" else None

    def _scratch(self, name: str, shape: tuple[int, ...] | torch.Size, like: Tensor) -> Tensor:
        """A CPU buffer kept between steps: the same arithmetic as a fresh tensor, but fresh pages cost more than
        the math there (the CUDA caching allocator already reuses memory)."""
        buffer = self._buffers_kept.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype:
            buffer = self._buffers_kept[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buffer

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every seed's decoder rows to unit norm."""
        W_dec = self.stacked("W_dec")
        W_dec /= W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> None:
        """`torch.nn.utils.clip_grad_norm_` applied to each seed's own gradients (its norm over all its tensors)."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.seeds, -1), dim=1) for g in grads], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.ndim - 1))).to(g.dtype))

    @torch.no_grad()
    def post_step(self) -> None:
        """The per-architecture post-step of `sae/` (JumpReLU: keep exp(log_threshold) finite)."""
        if self.architecture == "jumprelu":
            from saeseeds.sae.jumprelu import MAX_LOG_THRESHOLD

            self.stacked("log_threshold").clamp_(max=MAX_LOG_THRESHOLD)
