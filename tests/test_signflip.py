"""The sign-flip test and Holm's adjustment, against hand-counted cases and a brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from saeseeds import signflip
from saeseeds.signflip import holm_adjust, sign_flip_test, units_needed


def test_exact_p_counts_sign_assignments() -> None:
    # (1, 2, 3): sums of ±1 ±2 ±3 are 6, 4, 2, 0, 0, -2, -4, -6; only the observed 6 reaches 6
    t = sign_flip_test([1.0, 2.0, 3.0])
    assert t.exact and t.p_value == pytest.approx(1 / 8) and t.min_p == pytest.approx(1 / 8)
    # (3, -1, 1): observed 3; sums ≥ 3 are 3+1+1=5, 3-1+1=3, 3+1-1=3 -> 3 of 8
    assert sign_flip_test([3.0, -1.0, 1.0]).p_value == pytest.approx(3 / 8)
    rng = np.random.default_rng(0)
    d = rng.standard_normal(9)
    brute = np.mean([np.dot(s, d) >= d.sum() - 1e-12 for s in itertools.product((-1, 1), repeat=9)])
    assert sign_flip_test(d).p_value == pytest.approx(brute)


def test_effect_size_and_interval() -> None:
    t = sign_flip_test([0.1, 0.2, 0.3, 0.4])
    assert t.mean == pytest.approx(0.25) and t.positive == 1.0
    half = 3.182446305284263 * np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / 2  # t(0.975, 3)
    assert t.ci95 == pytest.approx((0.25 - half, 0.25 + half))
    one = sign_flip_test([0.5])
    assert one.p_value == 0.5 and math.isnan(one.sd)


def test_sampled_above_the_exact_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signflip, "DRAWS", 4000)
    t = sign_flip_test(np.full(30, 0.1))
    assert not t.exact and t.p_value == pytest.approx(1 / 4001) and t.min_p == pytest.approx(1 / 4001)
    null = sign_flip_test(np.random.default_rng(1).standard_normal(30) - 0.0)
    assert 0.0 < null.p_value < 1.0


def test_rejects_empty_or_non_finite() -> None:
    for bad in ([], [1.0, math.nan]):
        with pytest.raises(ValueError, match="finite differences"):
            sign_flip_test(bad)


def test_units_needed_and_holm() -> None:
    assert units_needed(0.05) == 5 and units_needed(0.0125) == 7 and units_needed(0.5) == 1
    adj = holm_adjust({"a": 0.01, "b": 0.04, "c": None, "d": 0.03})
    assert adj["c"] is None
    assert adj["a"] == pytest.approx(0.03) and adj["d"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
