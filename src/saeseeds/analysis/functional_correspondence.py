"""Functional correspondence of matched latents across two seeds: does seed B's latent *do* what seed A's does?

This follows the substitution test of the 2026 TMLR submission "Benchmarking Cross-Seed Feature Correspondence in
SAEs". For two SAEs A and B of one configuration and the one-to-one (Hungarian) decoder matching i ↔ j = π(i) of
their latents, on held-out rows x (docs/definitions.md, "Functional correspondence"):

    x̂_A = Σ_i f_A,i(x) d_A,i + b_A            (A's reconstruction)
    x̂'  = x̂_A − f_A,i(x) d_A,i + f_B,j(x) d_B,j   (latent i of A replaced by latent j of B, one pair at a time)
    ΔFVU(i → j) = (Σ_t ‖x_t − x̂'_t‖² − Σ_t ‖x_t − x̂_A,t‖²) / Σ_t ‖x_t − x̄‖²

computed for every pair at once in exact closed form (r = x − x̂_A, u = f_i d_i − g_j e_j, Σ‖r + u‖² − Σ‖r‖² =
Σ 2 r·u + ‖u‖²; one encode of each SAE per row batch). The **hard negative** of i is the latent j' ≠ π(i) of B
with the largest decoder cosine to d_A,i among B's alive latents in the same log10 firing-frequency bin as π(i);
the ablation ΔFVU (B's term left out: u = f_i d_i) is the scale both are read against. Only pairs whose two
latents fire on the rows enter. Output recovered of a substitution would need one model forward per latent: it is
not computed (reported as not available).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from saeseeds.errors import DataError

FREQ_EDGES = np.linspace(-5.0, 0.0, 11)
"""log10 firing-frequency bin edges (width 0.5; everything below 10^-4.5 falls in the first bin), as the study's
similarity-vs-frequency curve."""
CHUNK = 1024
"""Rows encoded at once."""


@dataclass
class SubstitutionTerms:
    """Sums over held-out rows from which every substitution's ΔFVU follows (float64, on the CPU)."""

    a_resid_dot: np.ndarray
    """[n_a] Σ_t f_A,ti (r_t · d_A,i)."""
    b_resid_dot: np.ndarray
    """[n_b] Σ_t f_B,tj (r_t · d_B,j), r = A's residual."""
    a_sq: np.ndarray
    """[n_a] Σ_t f_A,ti²."""
    b_sq: np.ndarray
    """[n_b] Σ_t f_B,tj²."""
    cross: np.ndarray
    """[n_a, n_b] Σ_t f_A,ti f_B,tj."""
    a_fired: np.ndarray
    """[n_a] share of rows on which latent i of A is non-zero."""
    b_fired: np.ndarray
    total_variance: float
    """Σ_t ‖x_t − x̄‖² (x̄: mean over the rows)."""
    rows: int


def substitution_terms(sae_a: Any, sae_b: Any, batches: Iterable[Tensor], *, chunk: int = CHUNK) -> SubstitutionTerms:
    """The sums of `SubstitutionTerms` over `batches` (rows in both SAEs' input space), one encode per SAE per chunk."""
    n_a, n_b = int(sae_a.num_latents), int(sae_b.num_latents)
    acc = {"a_resid_dot": torch.zeros(n_a, dtype=torch.float64), "b_resid_dot": torch.zeros(n_b, dtype=torch.float64),
           "a_sq": torch.zeros(n_a, dtype=torch.float64), "b_sq": torch.zeros(n_b, dtype=torch.float64),
           "cross": torch.zeros(n_a, n_b, dtype=torch.float64), "a_fired": torch.zeros(n_a, dtype=torch.float64),
           "b_fired": torch.zeros(n_b, dtype=torch.float64)}
    rows, sq, sum_x = 0, 0.0, None
    with torch.no_grad():
        for batch in batches:
            for x in torch.as_tensor(batch).split(chunk):
                x = x.to(sae_a.device, sae_a.dtype)
                fa = sae_a.encode_dense(x)
                fb = sae_b.encode_dense(x.to(sae_b.device, sae_b.dtype)).to(fa.device, fa.dtype)
                resid = (x - sae_a.decode_dense(fa)).double()
                fa64, fb64 = fa.double(), fb.double()
                acc["a_resid_dot"] += (fa64 * (resid @ sae_a.W_dec.double().T)).sum(0).cpu()
                acc["b_resid_dot"] += (fb64 * (resid @ sae_b.W_dec.double().to(resid.device).T)).sum(0).cpu()
                acc["a_sq"] += fa64.pow(2).sum(0).cpu()
                acc["b_sq"] += fb64.pow(2).sum(0).cpu()
                acc["cross"] += (fa64.T @ fb64).cpu()
                acc["a_fired"] += (fa != 0).sum(0).double().cpu()
                acc["b_fired"] += (fb != 0).sum(0).double().cpu()
                xd = x.double().cpu()
                sum_x = xd.sum(0) if sum_x is None else sum_x + xd.sum(0)
                sq += float(xd.pow(2).sum())
                rows += int(x.shape[0])
    if rows == 0 or sum_x is None:
        raise DataError("functional correspondence: no held-out rows given")
    arrays = {k: v.numpy() for k, v in acc.items()}
    arrays["a_fired"] /= rows
    arrays["b_fired"] /= rows
    return SubstitutionTerms(**arrays, total_variance=sq - float(sum_x.pow(2).sum()) / rows, rows=rows)


def substitution_delta_fvu(terms: SubstitutionTerms, dec_a: np.ndarray, dec_b: np.ndarray, rows_a: np.ndarray,
                           rows_b: np.ndarray | None) -> np.ndarray:
    """ΔFVU of replacing A's latent rows_a[k] by B's latent rows_b[k] (None: by nothing, the ablation), per k."""
    a = np.asarray(rows_a, dtype=np.int64)
    norm_a = np.einsum("ij,ij->i", dec_a[a], dec_a[a])
    delta = 2 * terms.a_resid_dot[a] + terms.a_sq[a] * norm_a
    if rows_b is not None:
        b = np.asarray(rows_b, dtype=np.int64)
        norm_b = np.einsum("ij,ij->i", dec_b[b], dec_b[b])
        dots = np.einsum("ij,ij->i", dec_a[a], dec_b[b])
        delta = delta - 2 * terms.b_resid_dot[b] + terms.b_sq[b] * norm_b - 2 * terms.cross[a, b] * dots
    return delta / max(terms.total_variance, 1e-300)


def frequency_bins(freq: np.ndarray, edges: np.ndarray = FREQ_EDGES) -> np.ndarray:
    """Bin index of each latent by log10 firing frequency (first bin: below edges[1], dead included)."""
    log = np.log10(np.maximum(np.asarray(freq, dtype=np.float64), 1e-12))
    return np.clip(np.digitize(log, edges[1:-1]), 0, len(edges) - 2)


def hard_negatives(dec_a: np.ndarray, dec_b: np.ndarray, partner: np.ndarray, b_bins: np.ndarray,
                   b_alive: np.ndarray) -> np.ndarray:
    """Per latent i of A: the alive latent j' ≠ partner[i] of B in partner[i]'s frequency bin with the largest
    decoder cosine to A's latent i; -1 when i is unmatched or the bin holds no other alive latent."""
    ua = dec_a / np.maximum(np.linalg.norm(dec_a, axis=1, keepdims=True), 1e-12)
    ub = dec_b / np.maximum(np.linalg.norm(dec_b, axis=1, keepdims=True), 1e-12)
    out = np.full(len(partner), -1, dtype=np.int64)
    for i in np.flatnonzero(partner >= 0):
        j = int(partner[i])
        allowed = b_alive & (b_bins == b_bins[j])
        allowed[j] = False
        if allowed.any():
            cos = np.where(allowed, ub @ ua[i], -np.inf)
            out[i] = int(np.argmax(cos))
    return out


def functional_correspondence(sae_a: Any, sae_b: Any, partner: np.ndarray, batches: Sequence[Tensor], *,
                              edges: np.ndarray = FREQ_EDGES) -> dict[str, Any]:
    """Matched vs hard-negative substitution ΔFVU of A's latents (A's decoder partner in B: `partner`, -1 when
    unmatched), overall and per log10 frequency bin of the matched latent of B (docs/definitions.md)."""
    partner = np.asarray(partner, dtype=np.int64)
    if len(partner) != int(sae_a.num_latents):
        raise DataError(f"functional correspondence: {len(partner)} partners for {sae_a.num_latents} latents of A")
    terms = substitution_terms(sae_a, sae_b, batches)
    dec_a = sae_a.W_dec.detach().double().cpu().numpy()
    dec_b = sae_b.W_dec.detach().double().cpu().numpy()
    b_alive = terms.b_fired > 0
    b_bins = frequency_bins(terms.b_fired, edges)
    negative = hard_negatives(dec_a, dec_b, partner, b_bins, b_alive)
    safe = np.maximum(partner, 0)
    keep = (partner >= 0) & (terms.a_fired > 0) & b_alive[safe] & (negative >= 0)
    rows = np.flatnonzero(keep)
    matched = substitution_delta_fvu(terms, dec_a, dec_b, rows, partner[rows])
    neg = substitution_delta_fvu(terms, dec_a, dec_b, rows, negative[rows])
    ablation = substitution_delta_fvu(terms, dec_a, dec_b, rows, None)
    bins = b_bins[partner[rows]]
    by_bin = []
    for b in range(len(edges) - 1):
        m = bins == b
        by_bin.append({"bin": b, "log10_frequency": [float(edges[b]), float(edges[b + 1])], "pairs": int(m.sum()),
                       "matched": _mean(matched[m]), "negative": _mean(neg[m]), "ablation": _mean(ablation[m])})
    return {"pairs": int(rows.size), "matched_pairs": int((partner >= 0).sum()), "rows": terms.rows,
            "matched_dfvu": _mean(matched), "negative_dfvu": _mean(neg), "ablation_dfvu": _mean(ablation),
            "matched_below_negative": _mean((matched < neg).astype(np.float64)),
            "by_frequency": by_bin, "output_recovered": None}


def _mean(values: np.ndarray) -> float | None:
    """Mean, None when empty (JSON null)."""
    return float(np.mean(values)) if len(values) else None


def summarise(pairs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and population sd over ordered seed pairs of each pair's matched, negative and ablation ΔFVU, and
    of the share of pairs whose matched substitution costs less than its hard negative; per bin too."""
    out: dict[str, Any] = {"seed_pairs": len(pairs), "output_recovered": "not available: a substitution's output "
                           "recovered needs one model forward per latent"}
    for key in ("matched_dfvu", "negative_dfvu", "ablation_dfvu", "matched_below_negative"):
        out[key] = _spread([p[key] for p in pairs])
    width = max((len(p["by_frequency"]) for p in pairs), default=0)
    out["by_frequency"] = [
        {"bin": b, "log10_frequency": pairs[0]["by_frequency"][b]["log10_frequency"],
         "pairs": sum(p["by_frequency"][b]["pairs"] for p in pairs),
         **{k: _spread([p["by_frequency"][b][k] for p in pairs]) for k in ("matched", "negative", "ablation")}}
        for b in range(width)]
    return out


def _spread(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """{mean, sd, n} over the values that exist (None when none)."""
    vals = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not vals.size:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(vals.mean()), "sd": float(vals.std()), "n": int(vals.size)}
