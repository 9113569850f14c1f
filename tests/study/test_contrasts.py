"""The study-level claims (a)-(d): which steps a star study allows, and verdicts over independent units that can
hold, fail, or be undetermined when the units are too few."""

from __future__ import annotations

import math

import pytest

from saeseeds.align.cross_seed import align_seeds
from saeseeds.study.contrasts import (
    Step,
    claim_steps,
    disjoint_pairs,
    judge_claims,
    spread_rows,
    unit_values,
)

H = "h"


def star_rows(steps: tuple[int, ...] = (5, 10)) -> list[dict]:
    """The grid rows of configs/study.toml's star at two milestones."""
    points = [("topk", 768, 16, None), ("topk", 384, 16, None), ("topk", 1536, 16, None), ("topk", 768, 8, None),
              ("topk", 768, 32, None), ("relu", 768, None, 16)]
    return [{"hookpoint": H, "sae_name": f"{a}-n{n}-{'k' if t is None else 'l0'}{k or t}", "architecture": a,
             "num_latents": n, "k": k, "target_l0": t if t is not None else math.nan, "step": s}
            for a, n, k, t in points for s in steps]


def test_star_study_steps_of_each_claim() -> None:
    steps = claim_steps(star_rows())
    assert [s.label() for s in steps["narrower_shares_more"]] == ["topk-n384-k16@10 > topk-n768-k16@10",
                                                                  "topk-n768-k16@10 > topk-n1536-k16@10"]
    assert [s.label() for s in steps["smaller_k_shares_more"]] == ["topk-n768-k8@10 > topk-n768-k16@10",
                                                                   "topk-n768-k16@10 > topk-n768-k32@10"]
    assert len(steps["longer_training_shares_more"]) == 6  # every set, 5 -> 10
    assert all(s.more[2] == 10 and s.less[2] == 5 for s in steps["longer_training_shares_more"])
    assert [s.label() for s in steps["relu_shares_more_at_matched_l0"]] == ["relu-n768-l016@10 > topk-n768-k16@10"]
    demo = claim_steps([r for r in star_rows() if r["num_latents"] != 1536 and r["k"] in (16, None)])
    assert demo["smaller_k_shares_more"] == [] and len(demo["narrower_shares_more"]) == 1


def _values(step: Step, deltas: list[float]) -> dict:
    units = [(f"rerun{u // 2}", 2 * (u % 2), 2 * (u % 2) + 1) for u in range(len(deltas))]
    return {step.more: {u: 0.2 + d for u, d in zip(units, deltas)}, step.less: dict.fromkeys(units, 0.2)}


def test_claims_hold_fail_or_stay_undetermined() -> None:
    a = Step((H, "n384", 10), (H, "n768", 10))
    b = Step((H, "k8", 10), (H, "k16", 10))
    c = Step((H, "m16", 10), (H, "m16", 5))
    values = {**_values(a, [0.02] * 8), **_values(b, [0.01, -0.02, 0.01, -0.01, 0.02, -0.02, 0.01, -0.01])}
    values[c.more] = {("rerun0", 0, 1): 0.3, ("rerun0", 2, 3): 0.3, ("rerun1", 0, 1): 0.3}
    values[c.less] = {("rerun0", 0, 1): 0.1, ("rerun0", 2, 3): 0.1, ("rerun1", 0, 1): 0.1}
    steps = {"narrower_shares_more": [a], "smaller_k_shares_more": [b], "longer_training_shares_more": [c],
             "relu_shares_more_at_matched_l0": []}
    v = judge_claims(values, steps, alpha=0.05)
    assert v["narrower_shares_more"]["holds"] is True and v["narrower_shares_more"]["p_value"] == 1 / 256
    assert v["narrower_shares_more"]["effect"]["mean"] == pytest.approx(0.02)
    assert v["smaller_k_shares_more"]["holds"] is False and v["smaller_k_shares_more"]["p_value"] > 0.05
    late = v["longer_training_shares_more"]  # 3 units: p ≥ 1/8 > 0.05 / 3 whatever the data
    assert late["holds"] is None and "3 units give at best p = 0.125" in late["reason"] and late["min_p"] == 1 / 8
    assert v["relu_shares_more_at_matched_l0"]["holds"] is None and "no configurations" in \
        v["relu_shares_more_at_matched_l0"]["reason"]
    assert v["narrower_shares_more"]["holm_family"] == 2 and v["narrower_shares_more"]["p_holm"] == 2 / 256


def test_every_step_must_hold() -> None:
    a1, a2 = Step((H, "n384", 10), (H, "n768", 10)), Step((H, "n768", 10), (H, "n1536", 10))
    values = {**_values(a1, [0.02] * 8), **_values(a2, [0.02] * 7 + [-0.5])}
    v = judge_claims(values, {"narrower_shares_more": [a1, a2]}, alpha=0.05)["narrower_shares_more"]
    assert v["holds"] is False and v["p_value"] == v["steps"][1]["p_value"] > 0.05
    assert v["effect"]["step"] == a2.label()


def test_unit_values_are_disjoint_pairs_of_a_rerun() -> None:
    from test_aggregate import planted

    assert disjoint_pairs(4) == [(0, 1), (2, 3)] and disjoint_pairs(3) == [(0, 1)]
    result = align_seeds(planted(4, 2), ["s0", "s1", "s2"], label="h/x", hookpoint=H, sae_name="x")
    got = unit_values("r0", [result], 10)
    assert got == {(H, "x", 10): {("r0", 0, 1): pytest.approx(6 / 8)}}  # seeds 0 and 1 share 4 + 2 rows


def test_spread_over_pairs_reruns_and_threads() -> None:
    key = (H, "x", 10)
    values = {"r0": {key: [0.1, 0.3]}, "r1": {key: [0.2, 0.2]}, "r0-t2": {key: [0.2, 0.2]}}
    [row] = spread_rows(values, reruns=["r0", "r1"], numeric=("r0", "r0-t2"))
    assert row["mean"] == pytest.approx(0.2) and row["pair_sd"] == pytest.approx(0.05)
    assert row["rerun_sd"] == pytest.approx(0.0) and row["thread_delta"] == pytest.approx(0.0)
    assert row["thread_pair_abs_delta"] == pytest.approx(0.1)
