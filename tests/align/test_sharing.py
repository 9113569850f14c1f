"""The one sharing rule: its validation, the two per-pair tests and the two cuts, on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saeseeds.align import SharingRule, align_weights
from saeseeds.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", -0.1), ("threshold", 1.0), ("threshold", float("nan")), ("stability", "overlap"),
     ("cut", "thirds"), ("epsilon", 0.5), ("epsilon", -0.01)],
)
def test_out_of_range_fields_name_themselves(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SharingRule(**{field: value})  # type: ignore[arg-type]


def test_round_trip_and_unknown_fields() -> None:
    rule = SharingRule(threshold=0.6, absolute=True, stability="reappears", cut="endpoints", epsilon=0.1)
    assert SharingRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ConfigError, match="tau"):
        SharingRule.from_dict({"tau": 0.7})


def test_half_cut_on_a_hand_built_case() -> None:
    stability = np.array([0.0, 0.05, 0.1, 0.5, 0.9, 0.95, 1.0])
    rule = SharingRule(cut="half")
    assert rule.stable(stability).tolist() == [False, False, False, True, True, True, True]
    assert rule.unstable(stability).tolist() == [True, False, False, False, False, False, False]


def test_endpoint_cut_on_a_hand_built_case() -> None:
    # 20 other seeds: stability is a multiple of 1/20; ε = 0.05 keeps 0, 1/20 unstable and 19/20, 1 stable
    stability = np.array([0, 1, 2, 10, 18, 19, 20]) / 20
    rule = SharingRule(cut="endpoints", epsilon=0.05)
    assert rule.stable(stability).tolist() == [False, False, False, False, False, True, True]
    assert rule.unstable(stability).tolist() == [True, True, False, False, False, False, False]
    middle = ~rule.stable(stability) & ~rule.unstable(stability)
    assert middle.tolist() == [False, False, True, True, True, False, False]  # excluded from both groups


def test_shared_needs_the_same_partner_under_both_matchings_and_both_cosines_above_tau() -> None:
    eye = torch.eye(4)
    enc_b = eye.clone()
    enc_b[[0, 1]] = enc_b[[1, 0]]  # the encoder matching pairs latent 0 with 1: not shared
    dec_b = eye.clone()
    dec_b[3] = torch.tensor([0.0, 0.0, 0.8, 0.6])  # latent 3's decoder cosine is 0.6 < 0.7
    pair = align_weights(eye, eye, dec_b, enc_b)
    assert pair.shared.tolist() == [False, False, True, False]


def test_shared_is_strict_and_reappears_is_inclusive() -> None:
    rule = SharingRule(threshold=0.7)
    partner = np.array([0, 1])
    cos = np.array([0.7, 0.71])
    assert rule.shared(partner, cos, partner, cos).tolist() == [False, True]
    assert rule.reappears(np.array([0.7, 0.69, np.nan])).tolist() == [True, False, False]
