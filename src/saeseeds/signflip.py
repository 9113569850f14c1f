"""The sign-flip test over a few independent units, and Holm's step-down adjustment (docs/definitions.md).

Where the unit of replication is small and few — pooling's seed splits (`saeseeds.pooling.verdict`), the findings'
seed pairs and reruns (`saeseeds.study.contrasts`) — the test's p-value must come from those units, not from the
latents inside them. `sign_flip_test` is the exact one-sided paired permutation test of "the mean difference is
above 0": under the null each unit's difference is symmetric about 0, so every assignment of signs is equally
likely; p is the share of the 2^n sign assignments whose sum reaches the observed one. With n units the smallest
reachable p is 2^-n, so a claim judged on too few units is undetermined rather than "does not hold".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

VERDICT_WORDS = {True: "holds", False: "does not hold", None: "undetermined"}
"""How a verdict's `holds` reads in every line, table and page: true, false, or null (undetermined: its units
cannot reach the level, or it was not tested)."""
EXACT_UNITS = 16
"""Up to this many units every sign assignment is enumerated (2^16 = 65,536); above it, `DRAWS` random ones."""
DRAWS = 200_000
"""Random sign assignments above `EXACT_UNITS` (p = (1 + hits) / (1 + draws))."""


@dataclass(frozen=True)
class SignFlip:
    """One sign-flip test: the units' differences summarised, the p-value and the best p the units allow."""

    n: int
    """Units (independent replicates)."""
    mean: float
    """Mean difference (the effect, in the differences' own unit)."""
    sd: float
    """Sample standard deviation of the differences (ddof 1; NaN below 2 units)."""
    ci95: tuple[float, float]
    """95% t-interval of the mean (n − 1 degrees of freedom; NaN below 2 units)."""
    positive: float
    """Share of units whose difference is above 0 (sign consistency)."""
    p_value: float
    """One-sided p of "mean difference > 0"."""
    min_p: float
    """Smallest p these many units can give (2^-n exact; 1 / (1 + draws) when sampled)."""
    exact: bool

    def reaches(self, level: float) -> bool:
        """Whether a p at or below `level` is possible at all with these units."""
        return self.min_p <= level

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        return out


def sign_flip_test(deltas: Sequence[float], *, seed: int = 0) -> SignFlip:
    """Exact (or, above `EXACT_UNITS`, sampled) one-sided sign-flip test of mean(deltas) > 0."""
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"sign_flip_test: needs a non-empty 1-D array of finite differences, got {d.tolist()!r}")
    n = int(d.size)
    observed = float(d.sum())
    slack = 1e-12 * max(1.0, float(np.abs(d).sum()))  # equal sums reached by another order of float additions
    if n <= EXACT_UNITS:
        codes = np.arange(2**n, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n, dtype=np.int64)) & 1)
        sums = signs @ d
        p = float(np.mean(sums >= observed - slack))
        min_p, exact = 2.0**-n, True
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        for start in range(0, DRAWS, 20_000):
            signs = rng.choice((-1.0, 1.0), size=(min(20_000, DRAWS - start), n))
            hits += int(np.sum(signs @ d >= observed - slack))
        p = (1 + hits) / (1 + DRAWS)
        min_p, exact = max(2.0**-n, 1 / (1 + DRAWS)), False
    mean = float(d.mean())
    if n >= 2:
        from scipy.stats import t

        sd = float(d.std(ddof=1))
        half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
    else:
        sd, ci = math.nan, (math.nan, math.nan)
    return SignFlip(n, mean, sd, ci, float(np.mean(d > 0)), p, min_p, exact)


def units_needed(level: float) -> int:
    """Fewest units whose exact sign-flip test can reach `level` (2^-n ≤ level)."""
    return max(1, math.ceil(-math.log2(level) - 1e-12))


def holm_adjust(pvalues: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjusted p-values of the entries with a p (None stays None; the family is the rest)."""
    tested = sorted((p, name) for name, p in pvalues.items() if p is not None and math.isfinite(p))
    m = len(tested)
    out: dict[str, float | None] = {name: None for name in pvalues}
    running = 0.0
    for i, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        out[name] = running
    return out
