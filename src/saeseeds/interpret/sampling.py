"""Which latents are interpreted and which contexts each is shown and scored on (docs/definitions.md,
"Interpretability").

- **Groups**: per seed, shared / unshared are the stable / unstable sets of the sharing rule under the `shared`
  estimator (Paulo & Belrose), stable / unstable those under the `reappears` estimator (Gerasimov et al.), with the
  rule's τ and cut. Latents that never fire on the analysis rows, or fire in too few (or too many) windows to give
  both splits `min_split` activating and non-activating windows, are not eligible.
- **Frequency matching**: the eligible latents of the two groups of a pair are put in `freq_bins` quantile bins of
  log firing frequency (`analysis.verdicts.frequency_strata`); each bin contributes as many latents from each group
  (the smaller group's count), and `latents` per group are drawn over the bins in proportion to those counts.
- **Splits**: a latent's activating windows, strongest first, go to the explanation split (the top `n_top`, then
  `n_explain_random` drawn over activation quantiles of the rest) and the scoring split (`n_score` drawn over the
  quantiles of what is left); the explanation split never exceeds half. Each split gets as many non-activating
  windows as it has activating ones, matched on token frequency, disjoint between the splits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from saeseeds.align.sharing import SharingRule
from saeseeds.errors import ConfigError


@dataclass(frozen=True)
class SamplingOptions:
    """How latents and contexts are sampled; every field is recorded in interpret.json."""

    latents: int = 40
    """Latents per group (per seed)."""
    window: int = 16
    n_top: int = 10
    n_explain_random: int = 10
    n_score: int = 20
    n_quantiles: int = 5
    min_split: int = 5
    """Fewest activating (and non-activating) windows each split must hold for a latent to be eligible."""
    freq_bins: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("latents", 1), ("window", 2), ("n_top", 0), ("n_explain_random", 0), ("n_score", 1),
                          ("n_quantiles", 1), ("min_split", 1), ("freq_bins", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')}: {value!r} is out of range (allowed: an integer ≥ {low})")
        if self.n_top + self.n_explain_random < self.min_split:
            raise ConfigError(f"--n-top + --n-explain-random = {self.n_top + self.n_explain_random} is below "
                              f"--min-split {self.min_split}: the explanation split could never be large enough")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


GROUP_PAIRS = {"sharing": ("shared", "unshared", "shared"), "stability": ("stable", "unstable", "reappears")}
"""pair name → (first group, second group, the stability estimator that defines them)."""


def group_masks(result: object, seed: int, rule: SharingRule) -> dict[str, np.ndarray]:
    """The four groups of one seed under the rule's τ and cut: shared / unshared (estimator `shared`) and stable /
    unstable (estimator `reappears`)."""
    out = {}
    for first, second, estimator in GROUP_PAIRS.values():
        judged = result.with_rule(rule.replace(stability=estimator))  # type: ignore[attr-defined]
        g = judged.groups()[seed]
        out[first], out[second] = np.asarray(g.stable, dtype=bool), np.asarray(g.unstable, dtype=bool)
    return out


def eligible(n_activating: np.ndarray, n_windows: int, opts: SamplingOptions) -> np.ndarray:
    """Latents with enough activating and non-activating windows for both splits."""
    need = 2 * opts.min_split
    return (n_activating >= need) & (n_windows - n_activating >= need)


def matched_sample(frequency: np.ndarray, first: np.ndarray, second: np.ndarray, n: int, opts: SamplingOptions,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents of `first`, latents of `second`, stratum per latent [num_latents], −1 outside): the same number
    from each group in every log-frequency bin, at most `n` per group."""
    from saeseeds.analysis.verdicts import frequency_strata

    both = first | second
    strata = frequency_strata(torch.from_numpy(frequency), torch.from_numpy(both), n_bins=opts.freq_bins).numpy()
    bins = sorted(int(k) for k in np.unique(strata[both]))
    avail = np.array([min(int((first & (strata == k)).sum()), int((second & (strata == k)).sum())) for k in bins])
    total = int(avail.sum())
    take = np.zeros_like(avail)
    if total:
        want = min(n, total)
        share = want * avail / total
        take = np.minimum(np.floor(share).astype(int), avail)
        for i in np.argsort(-(share - take), kind="stable"):  # largest remainders first
            if take.sum() >= want:
                break
            if take[i] < avail[i]:
                take[i] += 1
    picked_a, picked_b = [], []
    for k, t in zip(bins, take.tolist()):
        if t:
            picked_a.extend(rng.choice(np.flatnonzero(first & (strata == k)), t, replace=False).tolist())
            picked_b.extend(rng.choice(np.flatnonzero(second & (strata == k)), t, replace=False).tolist())
    return np.sort(np.array(picked_a, dtype=np.int64)), np.sort(np.array(picked_b, dtype=np.int64)), strata


def quantile_sample(ordered: np.ndarray, n: int, bins: int, rng: np.random.Generator) -> np.ndarray:
    """`n` of `ordered` (strongest first) spread over `bins` equal rank bins: one random pick per bin in turn."""
    if n <= 0 or ordered.size == 0:
        return ordered[:0]
    parts = [rng.permutation(p) for p in np.array_split(ordered, min(bins, ordered.size))]
    picked = [p[i] for i in range(max(len(p) for p in parts)) for p in parts if i < len(p)]
    return np.array(picked[:n], dtype=ordered.dtype)


@dataclass(frozen=True)
class Split:
    """One latent's windows: explanation split and scoring split, activating and non-activating."""

    explain: np.ndarray
    score: np.ndarray
    explain_negative: np.ndarray
    score_negative: np.ndarray


def split_windows(activating: np.ndarray, opts: SamplingOptions, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(explanation split, scoring split) of a latent's activating windows (strongest first); they never overlap."""
    n_explain = min(opts.n_top + opts.n_explain_random, activating.size // 2)
    top = activating[: min(opts.n_top, n_explain)]
    rest = activating[top.size:]
    extra = quantile_sample(rest, n_explain - top.size, opts.n_quantiles, rng)
    pool = rest[~np.isin(rest, extra)]
    score = quantile_sample(pool, min(opts.n_score, pool.size), opts.n_quantiles, rng)
    return np.concatenate([top, extra]), score


def match_negatives(targets: np.ndarray, candidates: np.ndarray, commonness: np.ndarray, used: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """For each target window (in random order), the unused candidate window whose tokens are closest in mean log
    frequency (ties: the first in a random order); `used` (bool over windows) is updated."""
    cand = candidates[np.isfinite(commonness[candidates])]
    cand = cand[rng.permutation(cand.size)]
    picked = []
    for t in targets[rng.permutation(targets.size)]:
        free = cand[~used[cand]]
        if free.size == 0:
            break
        c = commonness[t]
        best = free[int(np.argmin(np.abs(commonness[free] - c)))] if np.isfinite(c) else free[0]
        used[best] = True
        picked.append(best)
    return np.array(picked, dtype=np.int64)


def latent_split(activating: np.ndarray, n_windows: int, commonness: np.ndarray, opts: SamplingOptions,
                 rng: np.random.Generator) -> Split:
    """The explanation and scoring splits of one latent, each with its token-frequency-matched negatives."""
    explain, score = split_windows(activating, opts, rng)
    used = np.zeros(n_windows, dtype=bool)
    used[activating] = True
    candidates = np.flatnonzero(~used)
    explain_neg = match_negatives(explain, candidates, commonness, used, rng)
    score_neg = match_negatives(score, candidates, commonness, used, rng)
    return Split(explain, score, explain_neg, score_neg)


def latent_rng(seed: int, *parts: int) -> np.random.Generator:
    """The random stream of one latent: the same on every rerun, whatever else was sampled (resume)."""
    return np.random.default_rng([seed, *(int(p) for p in parts)])
