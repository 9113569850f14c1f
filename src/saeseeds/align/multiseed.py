"""Many seeds of one SAE configuration: all pairwise alignments, per-latent stability, found-only-in-base curve.

Feature stability of latent x of seed s is the fraction of the other seeds in which x is shared.
The found-only-in-base curve counts base latents shared with none of M other seeds, averaged over
every choice of base and over random orderings of the others (M = 0 .. S-1).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saeseeds.align.pair import Alignment

STABLE_CUT = 0.5
"""A latent is *stable* when shared in at least this fraction of the other seeds; *unstable* in none."""


@dataclass
class MultiSeedResult:
    """Alignments between every ordered pair of S SAEs and the statistics built on them."""

    names: list[str]
    alignments: dict[tuple[int, int], Alignment]
    stability: list[np.ndarray]  # per seed: [n_latents] fraction of other seeds where shared
    only_in_base: np.ndarray  # [S] mean count of base latents shared with none of M others, M=0..S-1
    only_in_base_std: np.ndarray  # spread over bases and orderings
    shared_fractions: np.ndarray  # [S, S], NaN on the diagonal
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        """Number of SAEs compared."""
        return len(self.names)

    def shared_fraction_stats(self) -> dict[str, float]:
        """Mean, standard deviation, min and max of the off-diagonal shared fractions."""
        off = self.shared_fractions[~np.eye(self.num_seeds, dtype=bool)]
        if off.size == 0:
            return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
        return {"mean": float(off.mean()), "std": float(off.std()), "min": float(off.min()),
                "max": float(off.max())}

    def stability_summary(self, cut: float = STABLE_CUT) -> dict[str, float]:
        """Share of latents (over all seeds) that are stable (>= cut) and unstable (shared nowhere)."""
        allv = np.concatenate(self.stability) if self.stability else np.zeros(0)
        if allv.size == 0:
            return {"stable_fraction": float("nan"), "unstable_fraction": float("nan"), "cut": cut}
        return {"stable_fraction": float((allv >= cut).mean()),
                "unstable_fraction": float((allv == 0).mean()), "cut": cut,
                "mean_stability": float(allv.mean())}


def stability_from_shared(shared_with: Sequence[np.ndarray]) -> np.ndarray:
    """Per-latent fraction of the other seeds in which it is shared, from one bool array per other seed."""
    if not shared_with:
        return np.zeros(0)
    return np.mean(np.stack([np.asarray(s, dtype=bool) for s in shared_with]), axis=0)


def only_in_base_curve(
    shared_with: Sequence[np.ndarray], *, orderings: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Count of base latents shared with none of the first M others, M = 0..len(others).

    Averaged over `orderings` random orderings of the others (all of them when there are few);
    returns (mean [M+1], std [M+1]).
    """
    others = [np.asarray(s, dtype=bool) for s in shared_with]
    n_others = len(others)
    if n_others == 0:
        return np.zeros(1), np.zeros(1)
    n = len(others[0])
    perms: list[tuple[int, ...]]
    all_perms = list(itertools.permutations(range(n_others))) if n_others <= 5 else []
    if all_perms and len(all_perms) <= orderings:
        perms = all_perms
    else:
        rng = np.random.default_rng(seed)
        perms = [tuple(rng.permutation(n_others)) for _ in range(orderings)]
    curves = np.empty((len(perms), n_others + 1))
    for k, perm in enumerate(perms):
        seen = np.zeros(n, dtype=bool)
        curves[k, 0] = n
        for m, other in enumerate(perm, start=1):
            seen |= others[other]
            curves[k, m] = n - seen.sum()
    return curves.mean(axis=0), curves.std(axis=0)


def align_seeds(
    weights: Sequence[tuple[Any, Any]],
    names: Sequence[str],
    align: Callable[[int, int], Alignment],
    *,
    orderings: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> MultiSeedResult:
    """Align every ordered pair (i, j), i != j, with `align(i, j)`, and derive the multi-seed statistics.

    `weights` is only used for its length (the SAEs are reached through `align`). Both directions
    are aligned because sharing is defined per latent of the first SAE.
    """
    s = len(weights)
    pairs = [(i, j) for i in range(s) for j in range(s) if i != j]
    alignments: dict[tuple[int, int], Alignment] = {}
    for done, (i, j) in enumerate(pairs):
        alignments[(i, j)] = align(i, j)
        if progress is not None:
            progress(done + 1, len(pairs))
    return summarise_alignments(list(names), alignments, orderings=orderings)


def summarise_alignments(
    names: list[str], alignments: dict[tuple[int, int], Alignment], *, orderings: int = 20
) -> MultiSeedResult:
    """Stability, found-only-in-base curve and the shared-fraction matrix from pairwise alignments."""
    s = len(names)
    fractions = np.full((s, s), np.nan)
    stability: list[np.ndarray] = []
    curves, spreads = [], []
    for i in range(s):
        shared_with = [alignments[(i, j)].shared for j in range(s) if j != i and (i, j) in alignments]
        for j in range(s):
            if (i, j) in alignments:
                fractions[i, j] = alignments[(i, j)].shared_fraction
        stability.append(stability_from_shared(shared_with))
        if shared_with:
            mean, std = only_in_base_curve(shared_with, orderings=orderings, seed=i)
            curves.append(mean)
            spreads.append(std)
    if curves:
        width = min(len(c) for c in curves)
        stack = np.stack([c[:width] for c in curves])
        curve = stack.mean(axis=0)
        # spread over bases and orderings: combine within-base variance and between-base variance
        within = np.stack([sp[:width] ** 2 for sp in spreads]).mean(axis=0)
        spread = np.sqrt(within + stack.var(axis=0))
    else:
        curve, spread = np.zeros(0), np.zeros(0)
    return MultiSeedResult(list(names), alignments, stability, curve, spread, fractions)
