"""The verdicts of pooling: does a pooled SAE raise stability at equal explained variance, against single seeds and
against single seeds trained for the same compute? Judged over the seed splits (docs/definitions.md, "Pooling").

The unit is the split, not the latent: per split, stability is the shared fraction between the two pooled SAEs
(built from disjoint halves of the seeds) minus the comparison's (the mean shared fraction of the single-seed pairs
across the halves, or of the baseline pairs). The test is the exact one-sided sign-flip test of "the mean
difference over splits is above 0" (`saeseeds.signflip`): with m splits its p is at least 2^-m, so too few splits
give an undetermined verdict (`null`, with the number of splits needed), never "does not hold". Equal explained
variance means every split's pooled SAEs explain at least the comparison's variance minus `ev_tolerance` (a
non-inferiority margin, not a test). The splits share seeds, so they are not fully independent replicates; the
sign-flip test treats them as exchangeable units, which is exact only for splits of disjoint seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from saeseeds.signflip import sign_flip_test, units_needed

CLAIMS = {"single": "pooling raises stability at equal explained variance",
          "baseline": "pooling beats training one seed for the same compute (stability at equal explained variance)"}


def judge(splits: Sequence[dict[str, Any]], *, against: str, ev_tolerance: float, alpha: float) -> dict[str, Any]:
    """Verdict over splits; each split holds `sf_pooled`, `ev_pooled` and `sf_<against>`, `ev_<against>`."""
    rows = _split_rows(splits, against, ev_tolerance)
    out: dict[str, Any] = {
        "claim": CLAIMS[against], "against": against, "alpha": alpha, "ev_tolerance": ev_tolerance,
        "unit": "seed split",
        "test": "exact one-sided sign-flip test over the splits of the shared-fraction difference (pooled pair − "
                f"{against}); and in every split explained variance ≥ {against}'s − tolerance",
        "per_split": rows,
    }
    if not rows:
        reason = ("no baseline pair to compare with (--baseline-seeds below 2)" if splits and against == "baseline"
                  else "no splits to judge (needs ≥ 4 seeds and --splits ≥ 1)")
        out.update(holds=None, reason=reason, p_value=None)
        return out
    test = sign_flip_test([r["delta_sf"] for r in rows])
    out.update(p_value=test.p_value, min_p=test.min_p, n_splits=test.n, effect=test.to_dict(),
               delta_sf=_spread([r["delta_sf"] for r in rows]), delta_ev=_spread([r["delta_ev"] for r in rows]))
    lower_ev = sum(not r["equal_ev"] for r in rows)
    if lower_ev:
        out.update(holds=False, reason=f"explained variance lower by more than {ev_tolerance} in {lower_ev} of "
                                       f"{len(rows)} splits")
    elif not test.reaches(alpha):
        need = units_needed(alpha)
        out.update(holds=None, reason=f"undetermined: {test.n} split(s) can give at best p = {test.min_p:.3g} > "
                                      f"α = {alpha}; the test needs ≥ {need} splits (--splits {need} and ≥ 5 seeds: "
                                      "4 seeds have only 3 disjoint-halves splits)")
    else:
        out["holds"] = test.p_value <= alpha
        if not out["holds"]:
            out["reason"] = (f"stability not higher at level {alpha} over {test.n} splits (p = {test.p_value:.3g}; "
                             f"higher in {round(test.positive * test.n)} of them)")
    return out


def _split_rows(splits: Sequence[dict[str, Any]], against: str, ev_tolerance: float) -> list[dict[str, Any]]:
    """Each split with a comparison: both shared fractions and explained variances, and their differences."""
    rows = []
    for k, s in enumerate(splits):
        sf_o, ev_o = s.get(f"sf_{against}"), s.get(f"ev_{against}")
        if sf_o is None or ev_o is None:
            continue
        gap = s["ev_pooled"] - ev_o
        rows.append({"split": k, "sf_pooled": s["sf_pooled"], "sf_other": sf_o, "delta_sf": s["sf_pooled"] - sf_o,
                     "ev_pooled": s["ev_pooled"], "ev_other": ev_o, "delta_ev": gap,
                     "equal_ev": gap >= -ev_tolerance, "more_stable": s["sf_pooled"] > sf_o})
    return rows


def _spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation (population), min and max."""
    n = len(values)
    mean = sum(values) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n), "min": min(values),
            "max": max(values), "n": n}
