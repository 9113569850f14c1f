"""Matryoshka BatchTopK (Bussmann, Nabeshima, Karvonen & Nanda, "Learning Multi-Level Features with Matryoshka
Sparse Autoencoders", ICML 2025; Nabeshima 2024): nested prefixes of the dictionary each reconstruct the input.

The code is BatchTopK's, computed once over all latents; the prefix of size m reconstructs x from the latents
< m alone, x̂_m = z[:, :m] W_dec[:m] + b_dec. The paper's loss (its Eq. 2) sums the prefix reconstruction errors
over the set M of prefix sizes, plus AuxK; here each prefix's error is its FVU (Σ (x − x̂_m)² over the batch
divided by the batch's total variance, as TopK trains on FVU), so the reconstruction term is Σ_{m∈M} FVU_m and the
largest prefix (num_latents) contributes the ordinary FVU. The reference code the paper cites
(dictionary_learning's MatryoshkaBatchTopKTrainer) averages the prefix losses instead; with Adam that changes only
the weight of AuxK relative to them (by the factor |M|).

Default prefixes (empty `matryoshka_prefixes`): num_latents/16, /8, /4, /2 and num_latents, each doubling. Public
Matryoshka BatchTopK SAEs grow their nested widths geometrically too (SAELens's Gemma-2-2B release: 128, 512, 2048,
8192, 32768, each x4); the doubling keeps five levels at the small dictionaries saeseeds trains on a CPU.

A checkpoint is an ordinary BatchTopK one (activation `batchtopk`, the learned inference threshold), so our export
writes it as SAELens's JumpReLU exactly like batchtopk; its saeseeds_config keeps `matryoshka_prefixes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from saeseeds.config.checks import check_int, fail
from saeseeds.sae.batchtopk import BatchTopK
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import register_architecture

if TYPE_CHECKING:
    from saeseeds.config import SaeConfig
    from saeseeds.sae.model import SparseAutoencoder

DEFAULT_DIVISORS = (16, 8, 4, 2)
"""Empty `matryoshka_prefixes`: num_latents // each of these (those >= 1, distinct), then num_latents."""


def resolved_prefixes(cfg: SaeConfig, num_latents: int) -> tuple[int, ...]:
    """The prefix sizes the loss sums over, ending in num_latents (added when the configured list lacks it)."""
    sizes = list(cfg.matryoshka_prefixes) or [num_latents // d for d in DEFAULT_DIVISORS if num_latents // d >= 1]
    sizes = sorted(set(sizes))
    return tuple(m for m in sizes if m < num_latents) + (num_latents,)


def prefix_fvus(sae: SparseAutoencoder, x: Tensor) -> list[tuple[int, Tensor]]:
    """(m, FVU of the prefix-m reconstruction) for every prefix, from the code `sae.spec.decoder` decodes: what the
    training loss sums (in training mode) or the nested SAEs' quality (in eval mode)."""
    enc = sae._encode(x)
    x = x.to(sae.dtype)
    return _cumulative_fvus(sae, x, _dense(sae, enc), sae.spec.decoder(sae), resolved_prefixes(sae.cfg, sae.num_latents))


def _cumulative_fvus(sae: SparseAutoencoder, x: Tensor, dense: Tensor, decoder: Tensor, prefixes: Sequence[int]
                     ) -> list[tuple[int, Tensor]]:
    """(m, FVU of b_dec + the first m latents' contributions) for ascending `prefixes`, each built on the last."""
    total_variance = (x - x.mean(0)).pow(2).sum().clamp_min(torch.finfo(x.dtype).tiny)
    out, partial, start = [], sae.b_dec.expand_as(x), 0
    for m in prefixes:
        partial = partial + dense[:, start:m].to(sae.dtype) @ decoder[start:m]
        out.append((m, (x - partial).pow(2).sum() / total_variance))
        start = m
    return out


def _dense(sae: SparseAutoencoder, enc: Encoding) -> Tensor:
    """The code as dense [batch, num_latents] activations."""
    if enc.dense is not None:
        return enc.dense
    assert enc.values is not None and enc.indices is not None
    return enc.pre_acts.new_zeros(enc.pre_acts.shape).scatter(-1, enc.indices, enc.values)


class Matryoshka(BatchTopK):
    """BatchTopK whose reconstruction term is Σ over nested prefixes m of FVU(x, z[:, :m] W_dec[:m] + b_dec)."""

    activation = "batchtopk"
    fields = (*BatchTopK.fields, "matryoshka_prefixes")
    saelens_names = ()
    dictionary_learning_classes = ()
    latent_unit_tensors = ("threshold",)
    sparsify_k = False

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """BatchTopK's checks; prefixes integers in [1, num_latents], strictly increasing."""
        super().validate(cfg, where, d_in)
        prefixes = cfg.matryoshka_prefixes
        if not isinstance(prefixes, list):
            raise fail(f"{where}.matryoshka_prefixes", prefixes, "a list of prefix sizes", "is not a list")
        known = cfg.known_num_latents(d_in)
        top = None if known is None else known[0]
        for i, size in enumerate(prefixes):
            note = "at most num_latents" + ("" if top is None else f" = {top}")
            check_int(f"{where}.matryoshka_prefixes[{i}]", size, 1, top, note)
        if any(b <= a for a, b in zip(prefixes, prefixes[1:], strict=False)):
            raise fail(f"{where}.matryoshka_prefixes", prefixes, "strictly increasing sizes, each <= num_latents",
                       "is not strictly increasing")

    def reconstruction_term(
        self, sae: SparseAutoencoder, x: Tensor, enc: Encoding, decoder: Tensor, fvu: Tensor, residual: Tensor
    ) -> Tensor:
        """Σ_m FVU_m: each inner prefix's FVU from the shared code, then the full dictionary's (the forward's fvu)."""
        inner = resolved_prefixes(sae.cfg, sae.num_latents)[:-1]
        loss = fvu
        for _, prefix_fvu in _cumulative_fvus(sae, x, _dense(sae, enc), decoder, inner):
            loss = loss + prefix_fvu
        return loss


MATRYOSHKA = register_architecture("matryoshka", Matryoshka())
