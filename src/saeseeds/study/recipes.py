"""The recipe comparison's yardstick (docs/study.md, "Recipe comparison"; exact definitions in docs/definitions.md,
"Recipe comparison"): one row per recipe from its stored cross-seed result and its seeds' held-out evaluations,
and a verdict per recipe against the reference: "more stable at no worse FVU", tested across seeds.

The unit of every test is the seed, never the latent: per seed s, the recipe's mean per-latent stability (under the
study's estimator) minus the reference's at the same seed (same initialisation seed, same batches), with the exact
one-sided sign-flip test (`saeseeds.signflip`) and Holm's adjustment over the recipes; FVU is a non-inferiority
margin (every seed's FVU at most the reference's + `fvu_margin`), not a test. Seeds of one recipe are not fully
independent (a seed's stability is measured against the other seeds of its recipe); the test treats them as
exchangeable units, as pooling treats its splits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from saeseeds.align.cross_seed import CrossSeedResult, pw_mcc
from saeseeds.align.sharing import STABILITY_KINDS
from saeseeds.signflip import VERDICT_WORDS, holm_adjust, sign_flip_test, units_needed
from saeseeds.study.aggregate import spread

MIN_SEEDS = 3
"""Fewest seeds paired with the reference for a verdict (fewer: null)."""
L0_TOLERANCE = 0.2
"""A recipe is at matched L0 when its mean held-out L0 is within ±20% of the reference's; otherwise stability and
FVU are not comparable (a sparser code reconstructs worse and shares differently) and the verdict is null."""
CLAIM = "more stable than the reference at no worse FVU"
COLUMNS = (
    "recipe", "kind", "architecture", "k", "target_l0", "num_latents", "n_seeds", "shared_fraction_mean",
    "shared_fraction_sd", "stability_shared_mean", "stability_shared_sd", "stability_reappears_mean",
    "stability_reappears_sd", "pw_mcc_mean", "pw_mcc_sd", "mmcs_mean", "mmcs_sd", "dead_fraction_mean",
    "dead_fraction_sd", "fvu_mean", "fvu_sd", "l0_mean", "l0_sd", "lm_loss_recovered_mean", "lm_loss_recovered_sd",
    "output_recovered_mean", "tokens_per_sae", "train_seconds_per_sae", "fc_matched_dfvu_mean", "fc_matched_dfvu_sd",
    "fc_negative_dfvu_mean", "fc_negative_dfvu_sd", "fc_ablation_dfvu_mean", "fc_matched_below_negative_mean",
    "recovered_mean", "recovered_sd", *(f"recovered_{kind}_mean" for kind in ("single", "identifiable", "ambiguous",
                                                                           "control")),
    "verdict", "p_value", "p_holm",
)
"""recipes.csv's columns, in order (docs/formats.md)."""


def per_seed(result: CrossSeedResult, records: Sequence[Mapping[str, Any] | None]) -> dict[str, list[float]]:
    """Per seed (in the result's order): mean stability under each estimator, and held-out FVU, L0 and dead
    fraction from its evaluation record (NaN where there is none)."""
    out: dict[str, list[float]] = {f"stability_{kind}": [float(np.mean(result.stability(i, kind)))
                                                         for i in range(result.num_seeds)]
                                   for kind in STABILITY_KINDS}
    for name in ("fvu", "l0", "dead_fraction"):
        out[name] = [_number(r.get(name)) if r is not None else math.nan for r in records]
    return out


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _both(row: dict[str, Any], name: str, values: Sequence[float | None]) -> None:
    """`<name>_mean` and `<name>_sd` (population sd) over the finite values; None when there are none."""
    vals = _finite(values)
    mean, sd = spread(vals) if vals else (None, None)
    row[f"{name}_mean"], row[f"{name}_sd"] = mean, sd


def recipe_row(name: str, point: Mapping[str, Any], result: CrossSeedResult, seeds: Mapping[str, list[float]], *,
               tokens: int, seconds: float | None, lm_loss: Sequence[float] | None,
               functional: Mapping[str, Any] | None) -> dict[str, Any]:
    """One recipe's row: sharing, stability, PW-MCC and MMCS over ordered seed pairs; the rest over seeds."""
    pairs = [result.alignments[key] for key in sorted(result.alignments)]
    row: dict[str, Any] = {"recipe": name, "kind": "recipe", "architecture": point.get("architecture"),
                           "k": point.get("k"), "target_l0": point.get("target_l0"),
                           "num_latents": int(np.mean(result.num_latents)), "n_seeds": result.num_seeds}
    _both(row, "shared_fraction", [al.shared_fraction for al in pairs])
    for kind in STABILITY_KINDS:
        _both(row, f"stability_{kind}", seeds[f"stability_{kind}"])
    _both(row, "pw_mcc", [pw_mcc(al) for al in pairs])
    _both(row, "mmcs", [al.mmcs for al in pairs])
    for metric in ("dead_fraction", "fvu", "l0"):
        _both(row, metric, seeds[metric])
    _both(row, "lm_loss_recovered", list(lm_loss or []))
    row["output_recovered_mean"] = None  # not measured by training for these runs (docs/study.md)
    row["tokens_per_sae"] = int(tokens)
    row["train_seconds_per_sae"] = seconds
    row.update(functional_columns(functional))
    return row


def functional_columns(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The functional-correspondence summary's headline numbers as flat columns (None when not measured)."""
    out: dict[str, Any] = {}
    for key in ("matched_dfvu", "negative_dfvu", "ablation_dfvu", "matched_below_negative"):
        rec = (summary or {}).get(key) or {}
        out[f"fc_{key}_mean"] = rec.get("mean")
        if key in ("matched_dfvu", "negative_dfvu"):
            out[f"fc_{key}_sd"] = rec.get("sd")
    return out


def seeds_for_holm(m: int, alpha: float) -> int:
    """Fewest seeds whose exact sign-flip test can pass Holm's first step over m tests (2^-n ≤ α / m)."""
    return units_needed(alpha / max(m, 1))


def judge_recipes(seeds: Mapping[str, Mapping[str, Any]], reference: str, *, kind: str, fvu_margin: float,
                  alpha: float) -> dict[str, dict[str, Any]]:
    """Verdict of every recipe but the reference: `seeds[name]` holds `seeds` (seed ids), `stability_<kind>` and
    `fvu` per seed. Paired by seed id; holds true / false / null with the numbers and the reason."""
    ref = seeds[reference]
    prepared: dict[str, dict[str, Any]] = {}
    for name, rec in seeds.items():
        if name == reference:
            continue
        ref_at = {s: i for i, s in enumerate(ref["seeds"])}
        common = [(i, ref_at[s]) for i, s in enumerate(rec["seeds"]) if s in ref_at]
        d_stab, d_fvu = [], []
        for i, j in common:
            values = (rec[f"stability_{kind}"][i], ref[f"stability_{kind}"][j], rec["fvu"][i], ref["fvu"][j])
            if all(v is not None and math.isfinite(v) for v in values):
                d_stab.append(values[0] - values[1])
                d_fvu.append(values[2] - values[3])
        prepared[name] = {"claim": CLAIM, "against": reference, "unit": "seed", "estimator": kind,
                          "fvu_margin": fvu_margin, "alpha": alpha, "n_seeds": len(d_stab),
                          "delta_stability": d_stab, "delta_fvu": d_fvu}
    tests = {name: sign_flip_test(v["delta_stability"]) for name, v in prepared.items()
             if v["n_seeds"] >= MIN_SEEDS}
    adjusted = holm_adjust({name: t.p_value for name, t in tests.items()})
    m = len(tests)
    for name, v in prepared.items():
        test = tests.get(name)
        v["p_value"], v["p_holm"], v["holm_family"] = (test.p_value if test else None), adjusted.get(name), m
        v["effect"] = test.to_dict() if test else None
        worse = sum(d > fvu_margin for d in v["delta_fvu"])
        l0_gap = _l0_gap(rec_l0 := _mean_finite(seeds[name].get("l0")), ref_l0 := _mean_finite(ref.get("l0")))
        v["l0"], v["reference_l0"] = rec_l0, ref_l0
        if l0_gap is not None and l0_gap > L0_TOLERANCE:
            v.update(holds=None, reason=f"undetermined: not at matched L0 (L0 {rec_l0:.3g} vs {reference}'s "
                                        f"{ref_l0:.3g}; a verdict needs them within ±{L0_TOLERANCE:.0%})")
        elif test is None:
            v.update(holds=None, reason=f"undetermined: {v['n_seeds']} seed(s) paired with {reference}; a verdict "
                                        f"needs ≥ {MIN_SEEDS}")
        elif worse:
            v.update(holds=False, reason=f"FVU above {reference}'s + {fvu_margin:g} in {worse} of {v['n_seeds']} "
                                         "seeds")
        elif m * test.min_p > alpha:
            v.update(holds=None, reason=f"undetermined: {test.n} seeds give at best p = {test.min_p:.3g}, and Holm "
                                        f"over {m} recipe(s) needs p ≤ {alpha / m:.3g}: ≥ {seeds_for_holm(m, alpha)} "
                                        f"seeds (observed Δ stability {test.mean:+.4f}, higher in "
                                        f"{round(test.positive * test.n)} of {test.n} seeds)")
        else:
            p_holm = adjusted[name]
            v["holds"] = p_holm is not None and p_holm <= alpha
            v["reason"] = None if v["holds"] else (
                f"stability not higher at level {alpha} after Holm over {m} recipe(s) (p = {test.p_value:.3g}, "
                f"adjusted {p_holm:.3g}; Δ stability {test.mean:+.4f}, higher in {round(test.positive * test.n)} "
                f"of {test.n} seeds)")
    return prepared


def _mean_finite(values: Sequence[float | None] | None) -> float | None:
    """Mean of the finite values, None when there are none."""
    vals = _finite(values or [])
    return float(np.mean(vals)) if vals else None


def _l0_gap(l0: float | None, reference: float | None) -> float | None:
    """|L0 / reference L0 − 1|, None when either is unknown (then the L0 match is not checked)."""
    if l0 is None or reference is None or reference <= 0:
        return None
    return abs(l0 / reference - 1)


def attach_verdicts(rows: list[dict[str, Any]], verdicts: Mapping[str, Mapping[str, Any]], reference: str) -> None:
    """Copy each recipe's verdict (true / false / null, p, Holm p) into its row; the reference reads 'reference'."""
    for row in rows:
        v = verdicts.get(row["recipe"])
        if row["recipe"] == reference:
            row["verdict"], row["p_value"], row["p_holm"] = "reference", None, None
        elif v is not None:
            row["verdict"] = VERDICT_WORDS[v["holds"]]
            row["p_value"], row["p_holm"] = v.get("p_value"), v.get("p_holm")
        else:
            row.setdefault("verdict", None)
            row.setdefault("p_value", None)
            row.setdefault("p_holm", None)


def flat_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with exactly `COLUMNS` (missing ones empty), for recipes.csv."""
    return [{c: row.get(c) for c in COLUMNS} for row in rows]


def recovery_columns(per_seed_counts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Synthetic runs: true features recovered per seed (`pooling.evaluate.recovery_counts` records), as mean and
    sd over seeds in total and the mean per kind (single, identifiable, ambiguous, control)."""
    row: dict[str, Any] = {}
    _both(row, "recovered", [c["recovered"] for c in per_seed_counts])
    for kind in ("single", "identifiable", "ambiguous", "control"):
        vals = _finite([c["by_kind"].get(kind) for c in per_seed_counts])
        row[f"recovered_{kind}_mean"] = float(np.mean(vals)) if vals else None
    return row
