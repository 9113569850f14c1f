"""The pooling verdicts: the unit is the seed split (a sign-flip test over splits), so every outcome — holds, does
not hold, undetermined with too few splits — is reachable, and many latents cannot stand in for few splits."""

from __future__ import annotations

import pytest

from saeseeds.pooling.evaluate import half_splits
from saeseeds.pooling.verdict import judge


def split(sf_pooled: float, sf_single: float, ev_pooled: float = 0.85, ev_single: float = 0.85,
          **extra: float) -> dict:
    return {"sf_pooled": sf_pooled, "sf_single": sf_single, "ev_pooled": ev_pooled, "ev_single": ev_single,
            **extra}


def test_three_splits_cannot_decide_however_large_the_gain() -> None:
    """The old z-test over 768 latents gave p < 1e-6 here; three splits allow at best p = 1/8."""
    rows = [split(0.6, 0.3, 0.85, 0.852), split(0.55, 0.32, 0.851, 0.85), split(0.58, 0.29, 0.86, 0.85)]
    v = judge(rows, against="single", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is None and v["unit"] == "seed split"
    assert v["min_p"] == pytest.approx(1 / 8) and v["p_value"] == pytest.approx(1 / 8)
    assert "undetermined" in v["reason"] and "≥ 5 splits" in v["reason"]
    assert v["delta_sf"]["n"] == 3 and v["delta_sf"]["min"] == pytest.approx(0.23)


def test_holds_when_enough_splits_are_all_more_stable_at_equal_ev() -> None:
    rows = [split(0.6 + 0.01 * i, 0.3) for i in range(6)]
    v = judge(rows, against="single", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is True and v["p_value"] == pytest.approx(1 / 64) and "reason" not in v
    assert v["effect"]["positive"] == 1.0 and v["effect"]["ci95"][0] > 0


def test_does_not_hold_when_splits_disagree_or_explained_variance_drops() -> None:
    mixed = [split(0.31, 0.30), split(0.29, 0.30), split(0.32, 0.30), split(0.28, 0.31), split(0.30, 0.29),
             split(0.33, 0.30)]
    v = judge(mixed, against="single", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is False and "not higher" in v["reason"] and v["p_value"] > 0.05
    ev_loss = [split(0.6, 0.3), split(0.6, 0.3, 0.80, 0.85)]
    v = judge(ev_loss, against="single", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is False and "explained variance lower" in v["reason"]  # decided without enough splits


def test_undetermined_without_splits_or_baseline() -> None:
    v = judge([], against="single", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is None and "no splits" in v["reason"]
    v = judge([split(0.6, 0.3)], against="baseline", ev_tolerance=0.01, alpha=0.05)
    assert v["holds"] is None and "baseline" in v["reason"]


def test_half_splits_are_disjoint_and_distinct() -> None:
    four = half_splits(4, 10)
    assert four == [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    six = half_splits(6, 4)
    assert len(six) == 4 and len(set(six)) == 4
    assert all(not set(a) & set(b) and len(a) == len(b) == 3 for a, b in six)
    assert half_splits(3, 5) == [] and half_splits(5, 0) == []
    assert len(half_splits(5, 100)) == 15  # 5 choose 2 halves of 2, the leftover seed unused
