"""Dead latents (never fired on the held-out rows) are reported apart: in the stability summary, the printed line
and the study table they are counted, and the alive latents' shares are given beside the all-latent ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_aggregate import N, planted

from saeseeds.align.cross_seed import align_seeds
from saeseeds.align.sharing import describe_stability
from saeseeds.study.aggregate import study_row
from saeseeds.study.table import format_table


def _result(with_frequencies: bool):
    """Three planted seeds (4 rows in all, 1 more in seeds 0 and 1, the rest unique); the last two latents of
    every seed (unique ones) never fire."""
    result = align_seeds(planted(4, 1), ["seed0", "seed1", "seed2"], label="h/topk", hookpoint="h",
                         sae_name="topk")
    if with_frequencies:
        freq = np.full(N, 0.01)
        freq[-2:] = 0.0
        result.frequencies = [freq.copy() for _ in range(3)]
    return result


def test_stability_summary_counts_dead_latents_apart() -> None:
    st = _result(True).stability_summary()
    # all 24 latents: unique rows are unstable (3 + 3 + 4 = 10), 6 of them dead
    assert st["latents"] == 24 and st["dead"] == 6 and st["alive"] == 18 and st["unstable_dead"] == 6
    assert st["unstable_fraction"] == pytest.approx(10 / 24) and st["dead_fraction"] == pytest.approx(6 / 24)
    # the alive ones: 12 common + 2 shared by seeds 0 and 1 are stable, 4 unique alive are unstable
    assert st["stable_fraction_alive"] == pytest.approx(14 / 18)
    assert st["unstable_fraction_alive"] == pytest.approx(4 / 18)
    line = describe_stability(st)
    assert "of all 24 latents" in line and "6 dead, 6 of them counted unstable" in line and "18 alive" in line


def test_without_firing_frequencies_dead_latents_are_unknown_and_said_so() -> None:
    st = _result(False).stability_summary()
    assert st["dead"] is None and st["stable_fraction_alive"] is None
    assert "dead latents unknown" in describe_stability(st)


def test_study_row_reports_dead_latents_and_the_alive_only_in_base_curve() -> None:
    records = [{"fvu": 0.1, "l0": 4.0, "dead_fraction": 0.25} for _ in range(3)]
    milestone = {"fraction": 1.0, "step": 10, "tokens": 640}
    row = study_row(_result(True), {"architecture": "topk", "k": 2, "target_l0": None}, milestone, records)
    assert row["dead_latents_mean"] == 2.0 and row["unstable_dead_fraction"] == pytest.approx(6 / 24)
    assert row["unstable_fraction_alive"] == pytest.approx(4 / 18)
    # found in neither other seed, of the alive latents: 1/6, 1/6 and 2/6 of each base's six alive latents
    assert row["only_in_base_alive_m2"] == pytest.approx(np.mean([1 / 6, 1 / 6, 2 / 6]))
    assert row["only_in_base_m2"] > row["only_in_base_alive_m2"]  # the dead ones are "found only in base" too
    text = format_table([row])
    assert "25.0%" in text and "22.2%" in text and "never fired" in text
    unknown = study_row(_result(False), {"architecture": "topk", "k": 2, "target_l0": None}, milestone, records)
    assert math.isnan(unknown["dead_latents_mean"]) and math.isnan(unknown["only_in_base_alive_m2"])
    assert "n/a" in format_table([unknown])
