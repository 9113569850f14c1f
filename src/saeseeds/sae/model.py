"""The sparse autoencoder: one module, four architectures, sparse (values, indices) codes where the architecture allows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.config import ARCHITECTURES, SaeConfig
from saeseeds.errors import DataError
from saeseeds.sae.batchtopk import encode_batchtopk
from saeseeds.sae.jumprelu import encode_jumprelu
from saeseeds.sae.outputs import Encoding, ForwardOutput, LatentCode
from saeseeds.sae.relu import encode_relu
from saeseeds.sae.sparse_ops import gather_linear, sparse_decode
from saeseeds.sae.topk import encode_topk

SPARSE_ARCHITECTURES = ("topk",)


class SparseAutoencoder(nn.Module):
    """x̂ = W_decᵀ f(W_enc (x − b_dec) + b_enc) + b_dec, with f set by `cfg.architecture`.

    Parameters follow sparsify's names and shapes (`encoder.weight [n, d]`, `encoder.bias [n]`,
    `W_dec [n, d]`, `b_dec [d]`) so checkpoints are interchangeable. The module knows nothing about
    seeds or training schedules: the caller passes a `torch.Generator` for initialisation.
    """

    def __init__(
        self,
        cfg: SaeConfig,
        d_in: int,
        *,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if cfg.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {cfg.architecture!r}; choose from {ARCHITECTURES}")
        if d_in <= 0:
            raise ValueError(f"d_in must be positive, got {d_in}")
        self.cfg = cfg
        self.d_in = d_in
        self.num_latents = cfg.resolved_num_latents(d_in)
        if cfg.architecture in ("topk", "batchtopk") and not 0 < cfg.k <= self.num_latents:
            raise ValueError(f"k={cfg.k} must be in 1..num_latents={self.num_latents}")
        # Decoder rows: random unit vectors; encoder initialised as the decoder's transpose (Gao et al.).
        # Drawn on the CPU from the caller's generator so every device gets the same initialisation.
        w = torch.randn(self.num_latents, d_in, generator=generator, dtype=torch.float32)
        w /= w.norm(dim=1, keepdim=True)
        self.encoder = nn.Linear(d_in, self.num_latents, device=device, dtype=dtype)
        # ReLU SAEs start with a small encoder (Conerly et al. 2024) so the dense initial code is not huge.
        self.encoder.weight.data.copy_(w * (0.1 if cfg.architecture == "relu" else 1.0))
        self.encoder.bias.data.zero_()
        self.W_dec = nn.Parameter(w.clone().to(device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))
        if cfg.architecture == "jumprelu":
            init = torch.full((self.num_latents,), math.log(cfg.jumprelu_init_threshold))
            self.log_threshold = nn.Parameter(init.to(device=device, dtype=dtype))
        if cfg.architecture == "batchtopk":
            self.register_buffer("threshold", torch.full((self.num_latents,), -1.0, device=device, dtype=dtype))

    # ------------------------------------------------------------------ properties

    @property
    def architecture(self) -> str:
        return self.cfg.architecture

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    # ------------------------------------------------------------------ encoding

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise DataError(f"activations have shape {tuple(x.shape)}; this SAE expects [batch, {self.d_in}]")

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations (x − b_dec) W_encᵀ + b_enc, [batch, num_latents]."""
        self._check_input(x)
        return F.linear(x.to(self.dtype) - self.b_dec, self.encoder.weight, self.encoder.bias)

    def _encode(self, x: Tensor) -> Encoding:
        self._check_input(x)
        x_c = x.to(self.dtype) - self.b_dec
        arch = self.cfg.architecture
        if arch == "topk":
            return encode_topk(x_c, self.encoder.weight, self.encoder.bias, self.cfg.k)
        pre = F.linear(x_c, self.encoder.weight, self.encoder.bias)
        if arch == "relu":
            return encode_relu(pre, self.W_dec)
        if arch == "jumprelu":
            return encode_jumprelu(pre, self.log_threshold, self.cfg.jumprelu_bandwidth)
        # Batch-level top-k while training, and at inference until a threshold has been estimated.
        batch_level = self.training or bool(self.threshold[0] < 0)
        enc, estimate = encode_batchtopk(pre, self.cfg.k, self.threshold[0], batch_level)
        if self.training and estimate is not None:
            self._update_threshold(estimate)
        return enc

    @torch.no_grad()
    def _update_threshold(self, estimate: Tensor) -> None:
        m = self.cfg.batchtopk_threshold_momentum
        current = self.threshold[0]
        new = estimate if current < 0 else m * current + (1 - m) * estimate
        self.threshold.fill_(float(new))

    def encode(self, x: Tensor) -> LatentCode:
        """Sparse code of `x`: exactly k entries per token for topk, the non-zeros (zero-padded) otherwise."""
        enc = self._encode(x)
        if enc.values is not None and enc.indices is not None:
            return LatentCode(enc.values, enc.indices)
        assert enc.dense is not None
        return dense_to_code(enc.dense)

    def encode_dense(self, x: Tensor) -> Tensor:
        """Dense latent activations [batch, num_latents]."""
        enc = self._encode(x)
        if enc.dense is not None:
            return enc.dense
        assert enc.values is not None and enc.indices is not None
        out = enc.pre_acts.new_zeros(enc.pre_acts.shape)
        return out.scatter(-1, enc.indices, enc.values)

    # ------------------------------------------------------------------ decoding

    def decode(self, code: LatentCode) -> Tensor:
        """Reconstruction from a sparse code: a gather of decoder rows, never a dense [batch, num_latents]."""
        return sparse_decode(code.values, code.indices, self.W_dec) + self.b_dec

    def decode_dense(self, acts: Tensor) -> Tensor:
        """Reconstruction from dense activations [batch, num_latents]."""
        return acts.to(self.dtype) @ self.W_dec + self.b_dec

    # ------------------------------------------------------------------ training forward

    def forward(self, x: Tensor, dead_mask: Tensor | None = None) -> ForwardOutput:
        """Reconstruct `x` and return the loss terms; `dead_mask` [num_latents] enables AuxK for topk/batchtopk."""
        enc = self._encode(x)
        x = x.to(self.dtype)
        if enc.dense is not None:
            sae_out = self.decode_dense(enc.dense)
            nonzero = enc.dense > 0
            l0 = nonzero.sum(-1).to(x.dtype).mean()
            fired = nonzero.any(0)
        else:
            assert enc.values is not None and enc.indices is not None
            sae_out = sparse_decode(enc.values, enc.indices, self.W_dec) + self.b_dec
            positive = enc.values > 0
            l0 = positive.sum(-1).to(x.dtype).mean()
            fired = torch.zeros(self.num_latents, dtype=torch.bool, device=x.device)
            fired[enc.indices[positive]] = True
        residual = x - sae_out
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        fvu = residual.pow(2).sum() / total_variance
        if self.cfg.architecture in ("topk", "batchtopk"):
            recon = fvu
        else:
            recon = residual.pow(2).sum(-1).mean()
        aux = self._auxk_loss(x, enc, residual.detach(), dead_mask)
        return ForwardOutput(sae_out, fvu, recon, enc.sparsity_loss, aux, l0, fired)

    def _auxk_loss(self, x: Tensor, enc: Encoding, residual: Tensor, dead_mask: Tensor | None) -> Tensor:
        """AuxK (Gao et al.): the top dead latents reconstruct the residual; scaled down when few are dead."""
        zero = x.new_zeros(())
        if dead_mask is None or self.cfg.architecture not in ("topk", "batchtopk"):
            return zero
        num_dead = int(dead_mask.sum())
        if num_dead == 0:
            return zero
        k_aux = min(self.cfg.auxk_k or self.d_in // 2, num_dead)
        masked = enc.pre_acts.detach().masked_fill(~dead_mask, float("-inf"))
        indices = masked.topk(k_aux, dim=-1, sorted=False).indices
        x_c = x - self.b_dec
        if enc.pre_acts.requires_grad:
            values = enc.pre_acts.gather(-1, indices).relu()
        else:
            values = gather_linear(x_c, self.encoder.weight, self.encoder.bias, indices, enc.pre_acts).relu()
        e_hat = sparse_decode(values, indices, self.W_dec)
        denom = (residual - residual.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        scale = min(num_dead / k_aux, 1.0)
        return scale * (e_hat - residual).pow(2).sum() / denom

    # ------------------------------------------------------------------ decoder norm

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the component of the decoder gradient parallel to each (unit) decoder row."""
        if self.W_dec.grad is None:
            return
        rows = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        parallel = (self.W_dec.grad * rows).sum(-1, keepdim=True)
        self.W_dec.grad -= parallel * rows

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale decoder rows to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


def dense_to_code(dense: Tensor) -> LatentCode:
    """Pack dense activations into (values, indices), as many columns as the busiest token needs."""
    width = max(int((dense != 0).sum(-1).max()) if dense.numel() else 0, 1)
    top = dense.abs().topk(width, dim=-1, sorted=True)
    return LatentCode(dense.gather(-1, top.indices), top.indices)
