"""Alignment figures: each writes <name>.png and the numbers behind it as strict JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saeseeds.align.pair import Alignment
from saeseeds.report.alignment_plots import (
    plot_dec_vs_enc,
    plot_only_in_base,
    plot_similarity_vs_frequency,
    plot_stability_histogram,
)


def _alignment() -> Alignment:
    """Five latents of a against b: three shared, one matched differently, one unmatched (NaN cosine)."""
    dec_partner = np.array([0, 1, 2, 3, -1])
    enc_partner = np.array([0, 1, 2, 1, -1])
    dec_cos = np.array([0.95, 0.9, 0.8, 0.5, np.nan])
    enc_cos = np.array([0.9, 0.85, 0.75, 0.4, np.nan])
    return Alignment(
        dec_partner=dec_partner, dec_cos=dec_cos, enc_partner=enc_partner, enc_cos=enc_cos,
        shared=np.array([True, True, True, False, False]), dec_max_cos=np.array([0.95, 0.9, 0.8, 0.6, 0.3]),
        threshold=0.7, num_latents_b=4, name_a="seed0", name_b="seed1",
    )


def test_dec_vs_enc(tmp_path: Path, check_figure) -> None:
    """The sidecar keeps every point, NaN cosines of unmatched latents as null."""
    path = plot_dec_vs_enc(_alignment(), tmp_path, name="fig_a")
    assert path == tmp_path / "fig_a.png"
    numbers = check_figure(path)
    assert numbers["dec_cos"] == [0.95, 0.9, 0.8, 0.5, None]
    assert numbers["same_partner"] == [True, True, True, False, False]
    assert numbers["shared_fraction"] == 0.6 and numbers["a"] == "seed0"


def test_only_in_base_and_stability_histogram(tmp_path: Path, check_figure) -> None:
    """Curve and histogram numbers match their inputs (one bar per attainable stability level)."""
    curves = {"topk": (np.array([100.0, 40.0, 20.0]), np.array([0.0, 3.0, np.nan]))}
    numbers = check_figure(plot_only_in_base(curves, tmp_path))
    assert numbers["topk"] == {"num_other_seeds": [0, 1, 2], "mean": [100.0, 40.0, 20.0], "std": [0.0, 3.0, None]}
    stability = {"topk": np.array([0.0, 0.5, 0.5, 1.0, 1.0, 1.0])}
    numbers = check_figure(plot_stability_histogram(stability, tmp_path))
    assert numbers["topk"] == {"values": [0.0, 0.5, 1.0], "counts": [1, 2, 3]}


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # a bin holding only the NaN value
def test_similarity_vs_frequency_with_dead_latents(tmp_path: Path, check_figure) -> None:
    """Dead latents (frequency 0) are kept in the numbers and binned on their own."""
    freq = np.array([0.0, 1e-4, 1e-3, 1e-2, 1e-1])
    sim = np.array([0.1, 0.5, 0.6, 0.9, np.nan])
    numbers = check_figure(plot_similarity_vs_frequency(freq, sim, tmp_path, label="topk"))
    assert numbers["frequency"] == freq.tolist() and numbers["value"][-1] is None
    assert numbers["bins"]["bin_low"][0] == 0.0 and numbers["bins"]["count"][0] == 1
