"""Fair evaluation pieces of pooling: held-out explained variance and L0, the disjoint-halves seed splits, how
often latents reappear in seeds they were not built from, and ground-truth recovery on synthetic runs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from saeseeds.align.assignment import row_max_cosine
from saeseeds.align.cross_seed import CrossSeedResult
from saeseeds.sae.model import SparseAutoencoder
from saeseeds.training.evaluate import evaluate_sae

RECOVERY_THRESHOLD = 0.9
"""A true feature is recovered by an SAE when its Hungarian-matched latent has decoder cosine above this (as in
`saeseeds.analysis.recovery`)."""


def heldout(sae: SparseAutoencoder, batches: Sequence[Tensor]) -> dict[str, float]:
    """Explained variance (1 − FVU), FVU, L0 and dead fraction of a raw-input SAE on the held-out rows."""
    metrics, _ = evaluate_sae(sae, batches)
    return {"explained_variance": metrics.explained_variance, "fvu": metrics.fvu, "l0": metrics.l0,
            "dead_fraction": metrics.dead_fraction, "tokens": metrics.tokens}


def half_splits(num_seeds: int, max_splits: int, seed: int = 0) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Pairs of disjoint halves (S // 2 seeds each) of the seeds, each unordered pair once; at most `max_splits`
    (a seeded random choice when there are more)."""
    h = num_seeds // 2
    if h < 2 or max_splits <= 0:
        return []
    out = []
    for a in itertools.combinations(range(num_seeds), h):
        rest = [s for s in range(num_seeds) if s not in a]
        for b in itertools.combinations(rest, h):
            if a < b:
                out.append((a, b))
    if len(out) > max_splits:
        pick = np.random.default_rng(seed).choice(len(out), size=max_splits, replace=False)
        out = [out[i] for i in sorted(pick)]
    return out


def cross_pair_stats(result: CrossSeedResult, a: Sequence[int], b: Sequence[int]) -> dict[str, float]:
    """Single seeds across two halves: mean shared fraction and mean share of latents that reappear (decoder
    max-cosine ≥ τ) in the other half's seeds, over every ordered pair (one seed from each half)."""
    shared, reappear = [], []
    for i, j in itertools.chain(itertools.product(a, b), itertools.product(b, a)):
        al = result.alignments[(i, j)]
        shared.append(al.shared_fraction)
        reappear.append(float(np.mean(result.rule.reappears(al.dec_max_cos))))
    return {"sf": float(np.mean(shared)), "sf_pairs": shared, "reappears": float(np.mean(reappear))}


def reappears_in(decoder: Tensor, others: Sequence[Tensor], *, threshold: float, absolute: bool) -> float:
    """Mean over `others` of the share of `decoder`'s rows whose best decoder cosine there is ≥ τ."""
    shares = [float(np.mean(row_max_cosine(decoder, other, absolute=absolute) >= threshold)) for other in others]
    return float(np.mean(shares)) if shares else float("nan")


def recovery_counts(truth: Any, decoder: Tensor) -> dict[str, Any]:
    """True features recovered (Hungarian cosine > RECOVERY_THRESHOLD) by one SAE, in total and by kind."""
    from saeseeds.analysis.recovery import match_features
    from saeseeds.data.synthetic import KIND_NAMES

    match = match_features(truth.directions, decoder.detach().cpu())
    hit = match.hungarian_cos.nan_to_num(-1.0) > RECOVERY_THRESHOLD
    by_kind = {}
    for code, name in enumerate(KIND_NAMES):
        mask = truth.kind == code
        if bool(mask.any()):
            by_kind[name] = int(hit[mask].sum())
    return {"recovered": int(hit.sum()), "by_kind": by_kind,
            "mean_hungarian_cos": float(match.hungarian_cos.nan_to_num(0.0).mean())}


def feature_kinds(truth: Any) -> dict[str, int]:
    """Number of true features of each kind."""
    from saeseeds.data.synthetic import KIND_NAMES

    return {name: int((truth.kind == code).sum()) for code, name in enumerate(KIND_NAMES)
            if bool((truth.kind == code).any())}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and (population) standard deviation, min and max of a list of numbers."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}


@torch.no_grad()
def decoder_rows(sae: SparseAutoencoder) -> Tensor:
    return sae.W_dec.detach().float().cpu()
