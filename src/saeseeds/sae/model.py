"""The sparse autoencoder: one module for every registered architecture, sparse (values, indices) codes where it allows."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saeseeds.config import SaeConfig
from saeseeds.errors import DataError
from saeseeds.sae.data_init import initial_decoder, initial_encoder
from saeseeds.sae.outputs import Encoding, ForwardOutput, LatentCode
from saeseeds.sae.registry import get_architecture
from saeseeds.sae.sparse_ops import sparse_decode
from saeseeds.sae.spec import ArchitectureSpec


class SparseAutoencoder(nn.Module):
    """x̂ = W_decᵀ f(W_enc (x − b_dec) + b_enc) + b_dec, with f set by the registered spec of `cfg.architecture`.

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
        initialise: bool = True,
        sample: Tensor | None = None,
        points: Tensor | None = None,
    ) -> None:
        """`initialise=False` leaves the weights uninitialised, for a caller that loads them next. `sample`: training
        activations for `init_decoder` data/kmeans; `points`: the run's shared centroids (`spec.shared_points`)."""
        super().__init__()
        if d_in <= 0:
            raise ValueError(f"d_in must be positive, got {d_in}")
        # Expansion-based sizes are known only now: k <= num_latents is checked here (ConfigError).
        cfg.validate(f"saes[name={cfg.resolved_name(d_in)}]", d_in)
        self.spec: ArchitectureSpec = get_architecture(cfg.architecture)
        self.cfg = cfg
        self.d_in = d_in
        self.num_latents = cfg.resolved_num_latents(d_in)
        # Decoder rows: random unit vectors; encoder initialised as the decoder's transpose (Gao et al.).
        # Drawn on the CPU from the caller's generator so every device gets the same initialisation.
        if initialise:  # nn.Linear's own init draws from the global RNG: kept, so earlier runs reproduce
            w = initial_decoder(cfg, self.num_latents, d_in, generator, sample)
            self.encoder = nn.Linear(d_in, self.num_latents, device=device, dtype=dtype)
            self.W_dec = nn.Parameter(w.clone().to(device=device, dtype=dtype))
        else:
            self.encoder = _uninitialised_linear(d_in, self.num_latents, device, dtype)
            self.W_dec = nn.Parameter(torch.empty(self.num_latents, d_in, device=device, dtype=dtype))
        self.encoder.bias.data.zero_()
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))
        self.spec.init_extra(self, device, dtype)
        if initialise:  # the architecture may replace the decoder (rasae): the encoder follows it
            replaced = self.spec.init_weights(self, generator, points)
            rows = initial_encoder(cfg, w if replaced is None else replaced, generator)
            self.encoder.weight.data.copy_(rows * self.spec.encoder_init_scale)

    # ------------------------------------------------------------------ properties

    @property
    def architecture(self) -> str:
        """The registered name of this SAE's architecture."""
        return self.cfg.architecture

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.W_dec.device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return self.W_dec.dtype

    # ------------------------------------------------------------------ encoding

    def _check_input(self, x: Tensor) -> None:
        """Activations must be [batch, d_in]."""
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise DataError(f"activations have shape {tuple(x.shape)}; this SAE expects [batch, {self.d_in}]")

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations (x − b_dec) W_encᵀ + b_enc, [batch, num_latents]."""
        self._check_input(x)
        return F.linear(x.to(self.dtype) - self.b_dec, self.encoder.weight, self.encoder.bias)

    def _encode(self, x: Tensor) -> Encoding:
        """The architecture's encoding of `x` (centred on b_dec first)."""
        self._check_input(x)
        return self.spec.encode(self, x.to(self.dtype) - self.b_dec)

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
        """Reconstruct `x` and return the loss terms; `dead_mask` [num_latents] enables an auxiliary loss (AuxK)."""
        enc = self._encode(x)
        x = x.to(self.dtype)
        decoder = self.spec.decoder(self)
        if enc.dense is not None:
            sae_out = enc.dense.to(self.dtype) @ decoder + self.b_dec
            nonzero = enc.dense > 0
            l0 = nonzero.sum(-1).to(x.dtype).mean()
            fired = nonzero.any(0)
        else:
            assert enc.values is not None and enc.indices is not None
            sae_out = sparse_decode(enc.values, enc.indices, decoder) + self.b_dec
            positive = enc.values > 0
            l0 = positive.sum(-1).to(x.dtype).mean()
            fired = torch.zeros(self.num_latents, dtype=torch.bool, device=x.device)
            fired[enc.indices[positive]] = True
        residual = x - sae_out
        total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
        fvu = residual.pow(2).sum() / total_variance
        recon = self.spec.reconstruction_term(self, x, enc, decoder, fvu, residual)
        aux = self.spec.aux_loss(self, x, enc, residual.detach(), dead_mask)
        return ForwardOutput(sae_out, fvu, recon, enc.sparsity_loss, aux, l0, fired)

    @torch.no_grad()
    def fit_encoder_scale(self, x: Tensor) -> float:
        """Scale the encoder (weight and bias) by the factor c > 0 minimising Σ|(x − b_dec) − c·(x̂ − b_dec)|² on `x`;
        returns c (1 when undefined). For a decoder initialised from data, whose k atoms add up along shared
        directions, so the first steps do not start from a reconstruction many times too large."""
        was_training = self.training
        self.eval()
        x = x.to(self.device, self.dtype)
        part = self.decode_dense(self.encode_dense(x)) - self.b_dec
        self.train(was_training)
        denominator = float(part.pow(2).sum())
        c = float(((x - self.b_dec) * part).sum()) / denominator if denominator > 0 else 1.0
        if not (c > 0 and c < float("inf")):
            return 1.0
        self.encoder.weight.mul_(c)
        self.encoder.bias.mul_(c)
        return c

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


def _uninitialised_linear(d_in: int, d_out: int, device: str | torch.device | None, dtype: torch.dtype) -> nn.Linear:
    """An `nn.Linear` with uninitialised weights, for weights loaded next (`nn.utils.skip_init` goes through
    the meta device, whose first use costs ~0.25 s)."""
    linear = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(linear)
    linear.in_features, linear.out_features = d_in, d_out
    linear.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
    linear.bias = nn.Parameter(torch.empty(d_out, device=device, dtype=dtype))
    return linear
