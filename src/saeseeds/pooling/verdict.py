"""The verdicts of pooling: does a pooled SAE raise stability at equal explained variance, against single seeds and
against single seeds trained for the same compute? Per split of the seeds, then across splits (docs/definitions.md,
"Pooling").

Per split, stability is the shared fraction between the two pooled SAEs (built from disjoint halves of the seeds)
and the comparison's: the mean shared fraction of the single-seed pairs across the halves (or of the baseline
pairs). One-sided two-proportion z-test of "pooled > comparison", treating latents as independent trials, with
each proportion's denominator the size of one SAE (for a mean over pairs this is conservative). Equal explained
variance means the pooled SAEs' mean explained variance is at least the comparison's minus `ev_tolerance`. A
verdict holds when every split passes both at level `alpha` (intersection-union: combined p = max over splits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy.stats import norm


def one_sided_p(p_pooled: float, n_pooled: int, p_other: float, n_other: int) -> float:
    """P-value of H0: pooled ≤ other, by a two-proportion z-test with unpooled variance."""
    se = math.sqrt(p_pooled * (1 - p_pooled) / max(n_pooled, 1) + p_other * (1 - p_other) / max(n_other, 1))
    diff = p_pooled - p_other
    if se == 0.0:
        return 0.0 if diff > 0 else 1.0
    return float(norm.sf(diff / se))


def judge(splits: Sequence[dict[str, Any]], *, against: str, ev_tolerance: float, alpha: float,
          n_pooled: int, n_other: int) -> dict[str, Any]:
    """Verdict over splits; each split holds `sf_pooled`, `ev_pooled` and `sf_<against>`, `ev_<against>`."""
    name = {"single": "pooling raises stability at equal explained variance",
            "baseline": "pooling beats training one seed for the same compute (stability at equal explained "
                        "variance)"}[against]
    rows = []
    for k, s in enumerate(splits):
        sf_o, ev_o = s.get(f"sf_{against}"), s.get(f"ev_{against}")
        if sf_o is None or ev_o is None:
            continue
        p = one_sided_p(s["sf_pooled"], n_pooled, sf_o, n_other)
        gap = s["ev_pooled"] - ev_o
        rows.append({"split": k, "sf_pooled": s["sf_pooled"], "sf_other": sf_o, "delta_sf": s["sf_pooled"] - sf_o,
                     "p_value": p, "ev_pooled": s["ev_pooled"], "ev_other": ev_o, "delta_ev": gap,
                     "equal_ev": gap >= -ev_tolerance, "passes": p <= alpha and gap >= -ev_tolerance})
    out: dict[str, Any] = {"claim": name, "against": against, "alpha": alpha, "ev_tolerance": ev_tolerance,
                           "test": "per split: one-sided two-proportion z-test of shared fractions (pooled pair > "
                                   f"{against}) and explained variance ≥ {against}'s − tolerance; across splits: "
                                   "every split must pass (p = max over splits)",
                           "per_split": rows}
    if not rows:
        reason = ("no baseline pair to compare with (--baseline-seeds below 2)" if splits and against == "baseline"
                  else "no splits to judge (needs ≥ 4 seeds and --splits ≥ 1)")
        out.update(holds=None, reason=reason, p_value=None)
        return out
    deltas = [r["delta_sf"] for r in rows]
    gaps = [r["delta_ev"] for r in rows]
    out["p_value"] = max(r["p_value"] for r in rows)
    out["delta_sf"] = _spread(deltas)
    out["delta_ev"] = _spread(gaps)
    out["holds"] = all(r["passes"] for r in rows)
    failed = [r for r in rows if not r["passes"]]
    if failed:
        why = []
        if any(r["p_value"] > alpha for r in failed):
            why.append(f"stability not higher at level {alpha} in {sum(r['p_value'] > alpha for r in failed)} of "
                       f"{len(rows)} splits")
        if any(not r["equal_ev"] for r in failed):
            why.append(f"explained variance lower by more than {ev_tolerance} in "
                       f"{sum(not r['equal_ev'] for r in failed)} of {len(rows)} splits")
        out["reason"] = "; ".join(why)
    return out


def _spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation (population), min and max."""
    n = len(values)
    mean = sum(values) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n), "min": min(values),
            "max": max(values), "n": n}
