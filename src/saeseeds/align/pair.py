"""Alignment of one pair of SAEs: per-latent decoder and encoder partners, shared latents, MMCS.

Takes weight matrices (or SAE objects holding them), never files. Which latents count as *shared* is
decided by `SharingRule` (saeseeds.align.sharing), the one definition the whole project uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from saeseeds.align.assignment import max_cosine_assignments
from saeseeds.align.screen_choice import ScreenPlan, plan_screen
from saeseeds.align.sharing import SharingRule
from saeseeds.align.similarity import ScreenMode
from saeseeds.errors import DataError


class HasWeights(Protocol):
    """Anything holding decoder rows `W_dec` and an `encoder.weight` ([num_latents, d_in] each)."""

    W_dec: torch.Tensor
    encoder: Any


@dataclass
class Alignment:
    """Per-latent alignment of SAE `a` to SAE `b` and its summary (shared fraction, MMCS)."""

    dec_partner: np.ndarray  # [n_a] int64, -1 when unmatched (n_a > n_b)
    dec_cos: np.ndarray  # [n_a] float64, NaN when unmatched
    enc_partner: np.ndarray
    enc_cos: np.ndarray
    shared: np.ndarray  # [n_a] bool, under `threshold`
    dec_max_cos: np.ndarray  # [n_a] max decoder cosine to any latent of b (MMCS ingredient)
    threshold: float = SharingRule.threshold
    absolute: bool = False
    num_latents_b: int = 0
    dec_total: float = 0.0
    enc_total: float = 0.0
    name_a: str = "a"
    name_b: str = "b"
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_latents_a(self) -> int:
        """Number of latents of a."""
        return len(self.dec_partner)

    @property
    def n_shared(self) -> int:
        """Number of a's latents shared with b."""
        return int(self.shared.sum())

    @property
    def shared_fraction(self) -> float:
        """Share of a's latents that are shared with b."""
        return self.n_shared / self.num_latents_a if self.num_latents_a else 0.0

    @property
    def same_partner(self) -> np.ndarray:
        """Latents matched to the same latent of b by the decoder and the encoder matchings."""
        return (self.dec_partner == self.enc_partner) & (self.dec_partner >= 0)

    @property
    def mmcs(self) -> float:
        """Mean over a's latents of the maximum decoder cosine to any latent of b."""
        return float(np.nanmean(self.dec_max_cos)) if self.num_latents_a else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no per-latent arrays)."""
        return {
            "a": self.name_a,
            "b": self.name_b,
            "num_latents_a": self.num_latents_a,
            "num_latents_b": self.num_latents_b,
            "threshold": self.threshold,
            "absolute": self.absolute,
            "n_shared": self.n_shared,
            "shared_fraction": self.shared_fraction,
            "n_same_partner": int(self.same_partner.sum()),
            "mmcs": self.mmcs,
            "dec_total": self.dec_total,
            "enc_total": self.enc_total,
            "stats": self.stats,
        }

    def how(self) -> str:
        """One line: how each side was matched (dense, or sparse with its screen, proof rounds and candidate
        pairs), the shared count and MMCS (compare's --verbose)."""
        how = []
        for side in ("decoder", "encoder"):
            st = (self.stats or {}).get(side) or {}
            how.append(f"{side} {st.get('method', '?')}" + (
                f" ({st.get('screen', '?')} screen, {st.get('rounds', 0)} rounds, "
                f"{st.get('final_pairs', 0):,} candidate pairs)" if st.get("method") == "sparse" else ""))
        return f"{', '.join(how)}; shared {self.n_shared}/{self.num_latents_a}, MMCS {self.mmcs:.3f}"

    def under(self, rule: SharingRule) -> Alignment:
        """The same matchings judged by another rule's threshold (a change of `absolute` needs new matchings)."""
        if rule.absolute != self.absolute:
            raise DataError(
                f"alignment {self.name_a} -> {self.name_b} used {'absolute' if self.absolute else 'signed'} "
                f"cosines; a rule with absolute={rule.absolute} needs a new alignment (run compare again)"
            )
        shared = rule.shared(self.dec_partner, self.dec_cos, self.enc_partner, self.enc_cos)
        return dataclasses.replace(self, shared=shared, threshold=rule.threshold)


def align_weights(
    dec_a: torch.Tensor | np.ndarray,
    enc_a: torch.Tensor | np.ndarray,
    dec_b: torch.Tensor | np.ndarray,
    enc_b: torch.Tensor | np.ndarray,
    *,
    rule: SharingRule | None = None,
    device: str | torch.device | None = None,
    screen: ScreenMode | str | None = None,
    progress: bool = False,
    name_a: str = "a",
    name_b: str = "b",
) -> Alignment:
    """Align two SAEs given their decoder and encoder rows ([num_latents, d_in] each) under `rule`."""
    return align_weights_both_ways(dec_a, enc_a, dec_b, enc_b, plan_screen(screen, device), rule=rule,
                                   progress=progress, name_a=name_a, name_b=name_b)[0]


def align_weights_both_ways(
    dec_a: torch.Tensor | np.ndarray,
    enc_a: torch.Tensor | np.ndarray,
    dec_b: torch.Tensor | np.ndarray,
    enc_b: torch.Tensor | np.ndarray,
    plan: ScreenPlan,
    *,
    rule: SharingRule | None = None,
    progress: bool = False,
    name_a: str = "a",
    name_b: str = "b",
) -> tuple[Alignment, np.ndarray]:
    """`align_weights` plus the exact maximum decoder cosine of every latent of b over a (b's MMCS
    ingredient, for `reverse_alignment`): from the same matrix when it is solved densely. `plan`: the comparison's
    device and screen, resolved once at its top (`screen_choice.plan_screen`)."""
    rule = rule or SharingRule()
    for label, w in (("dec_a", dec_a), ("enc_a", enc_a), ("dec_b", dec_b), ("enc_b", enc_b)):
        if torch.as_tensor(w).ndim != 2:
            raise DataError(f"{label}: expected [num_latents, d_in], got shape {tuple(torch.as_tensor(w).shape)}")
    if tuple(torch.as_tensor(dec_a).shape) != tuple(torch.as_tensor(enc_a).shape):
        raise DataError(f"dec_a {tuple(dec_a.shape)} and enc_a {tuple(enc_a.shape)} differ in shape")
    if tuple(torch.as_tensor(dec_b).shape) != tuple(torch.as_tensor(enc_b).shape):
        raise DataError(f"dec_b {tuple(dec_b.shape)} and enc_b {tuple(enc_b.shape)} differ in shape")
    dec, enc = max_cosine_assignments([(dec_a, dec_b), (enc_a, enc_b)], plan, absolute=rule.absolute,
                                      with_row_max=(True, False), with_col_max=(True, False), progress=progress)
    assert dec.row_max is not None and dec.col_max is not None
    return Alignment(
        dec_partner=dec.partner,
        dec_cos=dec.cosine,
        enc_partner=enc.partner,
        enc_cos=enc.cosine,
        shared=rule.shared(dec.partner, dec.cosine, enc.partner, enc.cosine),
        dec_max_cos=dec.row_max,
        threshold=rule.threshold,
        absolute=rule.absolute,
        num_latents_b=int(torch.as_tensor(dec_b).shape[0]),
        dec_total=dec.total,
        enc_total=enc.total,
        name_a=name_a,
        name_b=name_b,
        stats={"decoder": dataclasses.asdict(dec.stats), "encoder": dataclasses.asdict(enc.stats)},
    ), dec.col_max


def sae_weights(sae: HasWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder rows, encoder rows) of a `SparseAutoencoder` (or anything with W_dec and encoder.weight)."""
    return sae.W_dec.detach().float().cpu(), sae.encoder.weight.detach().float().cpu()


def align_pair(
    sae_a: Any,
    sae_b: Any,
    *,
    rule: SharingRule | None = None,
    device: str | torch.device | None = None,
    screen: ScreenMode | str | None = None,
    progress: bool = False,
    name_a: str = "a",
    name_b: str = "b",
) -> Alignment:
    """Align two SAE objects (see `align_weights`)."""
    dec_a, enc_a = sae_weights(sae_a)
    dec_b, enc_b = sae_weights(sae_b)
    return align_weights(dec_a, enc_a, dec_b, enc_b, rule=rule,
                         device=device, screen=screen, progress=progress, name_a=name_a, name_b=name_b)


def reverse_alignment(alignment: Alignment, dec_max_cos_b: np.ndarray) -> Alignment:
    """The alignment of b to a from that of a to b: both matchings are optimal transposed, so partners
    invert and the shared pairs are the same; only b's MMCS ingredient must be computed."""
    n_b = alignment.num_latents_b

    def invert(partner: np.ndarray, cosine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inv = np.full(n_b, -1, dtype=np.int64)
        cos = np.full(n_b, np.nan)
        matched = partner >= 0
        inv[partner[matched]] = np.flatnonzero(matched)
        cos[partner[matched]] = cosine[matched]
        return inv, cos

    dp, dc = invert(alignment.dec_partner, alignment.dec_cos)
    ep, ec = invert(alignment.enc_partner, alignment.enc_cos)
    return Alignment(
        dec_partner=dp, dec_cos=dc, enc_partner=ep, enc_cos=ec,
        shared=SharingRule(alignment.threshold, alignment.absolute).shared(dp, dc, ep, ec),
        dec_max_cos=np.asarray(dec_max_cos_b, dtype=np.float64),
        threshold=alignment.threshold, absolute=alignment.absolute,
        num_latents_b=alignment.num_latents_a, dec_total=alignment.dec_total,
        enc_total=alignment.enc_total, name_a=alignment.name_b, name_b=alignment.name_a,
        stats={"reversed_from": f"{alignment.name_a} -> {alignment.name_b}"},
    )
