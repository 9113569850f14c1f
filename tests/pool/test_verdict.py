"""The pooling verdicts: per split, then every split must pass; both outcomes and 'undetermined' are reachable."""

from __future__ import annotations

import pytest

from saeseeds.pooling.evaluate import half_splits
from saeseeds.pooling.verdict import judge, one_sided_p


def split(sf_pooled: float, sf_single: float, ev_pooled: float, ev_single: float, **extra: float) -> dict:
    return {"sf_pooled": sf_pooled, "sf_single": sf_single, "ev_pooled": ev_pooled, "ev_single": ev_single,
            **extra}


def test_holds_when_every_split_is_more_stable_at_equal_ev() -> None:
    rows = [split(0.6, 0.3, 0.85, 0.852), split(0.55, 0.32, 0.851, 0.85), split(0.58, 0.29, 0.86, 0.85)]
    v = judge(rows, against="single", ev_tolerance=0.01, alpha=0.05, n_pooled=768, n_other=768)
    assert v["holds"] is True and v["p_value"] < 1e-6 and "reason" not in v
    assert v["delta_sf"]["n"] == 3 and v["delta_sf"]["min"] == pytest.approx(0.23)


def test_does_not_hold_when_one_split_loses_explained_variance_or_stability() -> None:
    ev_loss = [split(0.6, 0.3, 0.85, 0.85), split(0.6, 0.3, 0.80, 0.85)]
    v = judge(ev_loss, against="single", ev_tolerance=0.01, alpha=0.05, n_pooled=768, n_other=768)
    assert v["holds"] is False and "explained variance lower" in v["reason"]
    small = [split(0.31, 0.30, 0.85, 0.85), split(0.6, 0.3, 0.85, 0.85)]
    v = judge(small, against="single", ev_tolerance=0.01, alpha=0.05, n_pooled=768, n_other=768)
    assert v["holds"] is False and "not higher" in v["reason"] and v["p_value"] > 0.05
    # a few latents cannot show a difference that many latents show
    assert one_sided_p(0.6, 768, 0.5, 768) < 0.001 < one_sided_p(0.6, 20, 0.5, 20)


def test_undetermined_without_splits_or_baseline() -> None:
    v = judge([], against="single", ev_tolerance=0.01, alpha=0.05, n_pooled=8, n_other=8)
    assert v["holds"] is None and "no splits" in v["reason"]
    v = judge([split(0.6, 0.3, 0.85, 0.85)], against="baseline", ev_tolerance=0.01, alpha=0.05, n_pooled=8,
              n_other=8)
    assert v["holds"] is None and "baseline" in v["reason"]


def test_half_splits_are_disjoint_and_distinct() -> None:
    four = half_splits(4, 10)
    assert four == [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    six = half_splits(6, 4)
    assert len(six) == 4 and len(set(six)) == 4
    assert all(not set(a) & set(b) and len(a) == len(b) == 3 for a, b in six)
    assert half_splits(3, 5) == [] and half_splits(5, 0) == []
    assert len(half_splits(5, 100)) == 15  # 5 choose 2 halves of 2, the leftover seed unused
