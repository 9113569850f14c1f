"""Relaxed Archetypal SAE, RA-SAE (Fel et al., "Archetypal SAE: Adaptive and Stable Dictionary Learning for Concept
Extraction in Large Vision Models", ICML 2025): a TopK SAE whose atoms are convex combinations of candidate points
plus a small relaxation.

Dictionary D = A·C + Λ: C [candidates, d_in] are k-means centroids of the run's init sample (one k-means with a
fixed seed, so every seed of the run shares C; stored as the buffer `archetypes`), A [num_latents, candidates]
(`mixing`) is row-stochastic, and every row of Λ (`relaxation`) has norm <= δ (`rasae_delta`). The constraint is
kept by projection after every optimizer step (`post_step`): each row of A onto the probability simplex (the exact
Euclidean projection, Duchi et al. 2008; the authors' toolbox `overcomplete` uses ReLU + renormalisation), each row
of Λ onto the δ-ball. So every atom lies within δ of conv(C): δ = 0 is the pure archetypal dictionary, δ = ∞ leaves
Λ, hence D, unconstrained (an ordinary TopK decoder; run configs must hold finite numbers, so there a large δ).

Defaults: δ = 1.0, the toolbox's `RelaxedArchetypalDictionary(delta=1.0)`; here in normalised-activation units
(mean squared row norm d_in). The toolbox's optional trainable scalar multiplier exp(μ)·D is left out: it would
move atoms off the hull the constraint promises. Initialisation: Λ = 0 and each row of A one-hot on a candidate
drawn per seed without replacement (the toolbox starts A at the identity, atom i = centroid i, and relies on a
random encoder for seed variation; with the transpose encoder every seed would then train identically), from
`rasae_candidates` = 2 x num_latents candidates by default so each seed starts on its own random half.

Decoder norm: the paper's atoms are not unit-norm (they are data points). With `normalize_decoder` (the default)
W_dec holds each atom's direction a_i/|a_i| and the code carries the scale (the toolbox's trainable multiplier
exp(μ) is a global scale; this is a per-atom one that keeps the optimiser at TopK's scale); with normalize_decoder
= false W_dec holds the atoms themselves. Either way the constraint is on the atoms a_i = (A·C + Λ)_i. There is no
decoder bias (x̂ = z·D, as in the paper and its toolbox): b_dec is frozen at 0 and `init_b_dec` does not apply.
W_dec is materialised after every step, not trained directly, so checkpoints read as a plain TopK SAE (activation
`topk`: sparsify, SAELens, our export); the factors go to the checkpoint's saeseeds.safetensors, and our loader
restores them (and checks they give W_dec).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from saeseeds.config.checks import check_int, fail
from saeseeds.errors import CheckpointError
from saeseeds.sae.auxk import auxk_loss
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture
from saeseeds.sae.topk import TopK

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder

FACTORS = ("archetypes", "mixing", "relaxation")
"""The dictionary's factors C, A, Λ as checkpoint tensors."""
CONSISTENCY_RTOL = 1e-4
"""A loaded checkpoint's W_dec must equal A·C + Λ to this relative tolerance (of W_dec's largest entry)."""
STANDALONE_SEED = 0
"""Seed of the random candidates of an SAE built without the run's centroids (outside `saeseeds train`)."""


def candidate_count(cfg: SaeConfig, num_latents: int) -> int:
    """`rasae_candidates`, 0 meaning 2 x num_latents."""
    return cfg.rasae_candidates or 2 * num_latents


def project_simplex(rows: Tensor) -> Tensor:
    """Each row's Euclidean projection onto the probability simplex {w >= 0, Σ w = 1} (sort-based, exact)."""
    u = rows.sort(dim=-1, descending=True).values
    css = u.cumsum(-1) - 1
    ind = torch.arange(1, rows.shape[-1] + 1, device=rows.device, dtype=rows.dtype)
    rho = (u - css / ind > 0).sum(-1, keepdim=True).clamp_min(1)
    theta = css.gather(-1, rho - 1) / rho.to(rows.dtype)
    return (rows - theta).clamp_min(0)


def clamp_rows(rows: Tensor, delta: float) -> Tensor:
    """Each row projected onto the ball of radius `delta` (rows inside it unchanged; δ = ∞ changes nothing)."""
    norms = rows.norm(dim=-1, keepdim=True)
    over = norms > delta
    return torch.where(over, rows * (delta / norms.clamp_min(torch.finfo(rows.dtype).tiny)), rows)


def atoms(sae: nn.Module) -> Tensor:
    """The atoms A·C + Λ, differentiable in A and Λ."""
    return sae.mixing @ sae.archetypes + sae.relaxation


def dictionary(sae: nn.Module) -> Tensor:
    """The decoder rows: the atoms, each scaled to unit norm when `normalize_decoder` (the code carries the scale)."""
    rows = atoms(sae)
    if sae.cfg.normalize_decoder:
        rows = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return rows


class RelaxedArchetypal(TopK):
    """TopK encoder; decoder atoms A·C + Λ within `rasae_delta` of the convex hull of the run's centroids C."""

    activation = "topk"
    fields = (*TopK.fields, "rasae_delta", "rasae_candidates")
    saelens_names = ()
    dictionary_learning_classes = ()
    latent_unit_tensors = ()
    sparsify_k = True
    scale_free_tensors = FACTORS
    sidecar_tensors = FACTORS

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """TopK's checks; δ >= 0 (∞ allowed), candidates >= 0, decoder initialised by its own candidates."""
        super().validate(cfg, where, d_in)
        delta = cfg.rasae_delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or math.isnan(delta) or delta < 0:
            raise fail(f"{where}.rasae_delta", delta, "a number >= 0 (0: pure archetypal; inf: unconstrained)")
        check_int(f"{where}.rasae_candidates", cfg.rasae_candidates, 0, note="0 means 2 x num_latents")
        if cfg.init_decoder != "random":
            raise fail(f"{where}.init_decoder", cfg.init_decoder, "random for rasae",
                       "does not apply: rasae's atoms start on its own k-means candidates")

    def shared_points(self, cfg: SaeConfig, num_latents: int) -> int:
        """The candidates C: k-means centroids of the init sample shared by every seed."""
        return candidate_count(cfg, num_latents)

    def init_extra(self, sae: SparseAutoencoder, device: torch.device | str | None, dtype: torch.dtype) -> None:
        """C (buffer), A and Λ (parameters); W_dec becomes their materialised product, not trained itself."""
        count = candidate_count(sae.cfg, sae.num_latents)
        sae.register_buffer("archetypes", torch.zeros(count, sae.d_in, device=device, dtype=dtype))
        sae.mixing = nn.Parameter(torch.zeros(sae.num_latents, count, device=device, dtype=dtype))
        sae.relaxation = nn.Parameter(torch.zeros(sae.num_latents, sae.d_in, device=device, dtype=dtype))
        sae.W_dec.requires_grad_(False)
        sae.b_dec.requires_grad_(False)  # x̂ = z·D, no decoder bias, as in the paper: b_dec stays 0

    def init_weights(self, sae: SparseAutoencoder, generator: torch.Generator | None,
                     points: Tensor | None) -> Tensor | None:
        """C from `points` (else seeded random unit rows), A one-hot on distinct candidates drawn per seed, Λ = 0;
        the encoder follows d_i / |d_i|² (the transpose, for decoder rows d_i that may not be unit-norm)."""
        count, n = sae.archetypes.shape[0], sae.num_latents
        if points is None:
            points = torch.randn(count, sae.d_in, generator=torch.Generator().manual_seed(STANDALONE_SEED))
            points = points / points.norm(dim=1, keepdim=True)
        if tuple(points.shape) != tuple(sae.archetypes.shape):
            raise ValueError(f"rasae needs {tuple(sae.archetypes.shape)} candidate points, got {tuple(points.shape)}")
        mixing = torch.zeros(n, count)
        picks = torch.randperm(count, generator=generator)[: min(n, count)]
        mixing[torch.arange(len(picks)), picks] = 1.0
        if n > count:  # more atoms than candidates: the rest start at random convex combinations
            weights = -torch.rand(n - count, count, generator=generator).clamp_min(1e-12).log()
            mixing[count:] = weights / weights.sum(-1, keepdim=True)
        with torch.no_grad():
            sae.archetypes.copy_(points)
            sae.mixing.copy_(mixing)
            sae.relaxation.zero_()
            sae.W_dec.copy_(dictionary(sae))
        rows = sae.W_dec.detach().to("cpu", torch.float32)
        return rows / rows.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)  # z_i = <x, d_i>/|d_i|^2 fits d_i

    def decoder(self, sae: SparseAutoencoder) -> Tensor:
        """The dictionary from A·C + Λ while gradients flow (training), else the materialised W_dec (the same)."""
        if torch.is_grad_enabled() and sae.mixing.requires_grad:
            return dictionary(sae)
        return sae.W_dec

    def aux_loss(
        self, sae: SparseAutoencoder, x: Tensor, enc: Encoding, residual: Tensor, dead_mask: Tensor | None
    ) -> Tensor:
        """AuxK, its gradient reaching the dictionary's factors."""
        return auxk_loss(sae, x, enc, residual, dead_mask, decoder=self.decoder(sae))

    def post_step(self, sae: SparseAutoencoder) -> None:
        """Project A's rows onto the simplex and Λ's onto the δ-ball, then materialise W_dec from A·C + Λ."""
        sae.mixing.copy_(project_simplex(sae.mixing))
        sae.relaxation.copy_(clamp_rows(sae.relaxation, sae.cfg.rasae_delta))
        sae.W_dec.copy_(dictionary(sae))

    def checkpoint_tensors(self, sae: SparseAutoencoder) -> dict[str, Tensor]:
        """C, A and Λ (saved beside sae.safetensors: `sidecar_tensors`)."""
        return {name: getattr(sae, name) for name in FACTORS}

    def load_checkpoint_tensors(self, sae: SparseAutoencoder, tensors: Mapping[str, Tensor], source: str) -> None:
        """Restore C, A and Λ; they must reproduce the checkpoint's W_dec."""
        for name in FACTORS:
            tensor, target = tensors.get(name), getattr(sae, name)
            if tensor is None:
                raise CheckpointError(f"{source}: a rasae SAE needs its {name} tensor (saeseeds.safetensors)")
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointError(f"{source}: {name} has shape {tuple(tensor.shape)}, expected {tuple(target.shape)}")
            target.data.copy_(tensor.to(target.dtype))
        product = dictionary(sae).detach()
        scale = float(sae.W_dec.detach().abs().max().clamp_min(1.0))
        if not torch.allclose(product, sae.W_dec.detach(), rtol=0.0, atol=CONSISTENCY_RTOL * scale):
            raise CheckpointError(f"{source}: W_dec differs from mixing @ archetypes + relaxation (a rasae checkpoint "
                                  "stores its dictionary and its factors; they disagree)")


RASAE = register_architecture("rasae", RelaxedArchetypal())
