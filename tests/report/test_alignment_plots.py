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


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the plot functions hand to save_figure (inspected before they are closed)."""
    import saeseeds.report.alignment_plots as module

    figures: list = []
    original = module.save_figure

    def keep(fig, path, numbers=None):
        figures.append({"titles": [ax.get_title() for ax in fig.axes], "axes": fig.axes[0],
                        "xticks": list(fig.axes[0].get_xticks()), "xscale": fig.axes[0].get_xscale()})
        return original(fig, path, numbers)

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def test_titles_name_the_configuration(tmp_path: Path, drawn: list) -> None:
    """TopK and ReLU figures are told apart by their titles, not only by their file names."""
    plot_dec_vs_enc(_alignment(), tmp_path, name="a_topk", label="blocks.3.mlp/topk-768")
    plot_dec_vs_enc(_alignment(), tmp_path, name="a_relu", label="blocks.3.mlp/relu-768")
    assert "blocks.3.mlp/topk-768" in drawn[0]["titles"][0] and "seed0 vs seed1" in drawn[0]["titles"][0]
    assert drawn[0]["titles"][0] != drawn[1]["titles"][0]
    curves = {"blocks.3.mlp/topk-768": (np.array([9.0, 5.0, 4.0, 3.0, 3.0]), np.zeros(5)),
              "blocks.3.mlp/relu-768": (np.array([9.0, 6.0, 5.0, 5.0, 4.0]), np.zeros(5))}
    plot_only_in_base(curves, tmp_path)
    fig_b = drawn[2]
    assert "blocks.3.mlp" in fig_b["titles"][0]
    assert [t.get_text() for t in fig_b["axes"].get_legend().get_texts()][:2] == ["topk-768", "relu-768"]
    visible = [t for t in fig_b["xticks"] if 0 <= t <= 4]
    assert visible and all(float(t).is_integer() for t in visible)  # integer axis, integer ticks
    assert fig_b["axes"].get_ylim()[0] == 0


def test_dead_latents_drawn_on_top_and_grouped_histogram(tmp_path: Path, drawn: list, check_figure) -> None:
    freq = np.array([0.0, 0.0, 1e-3, 1e-2, 1e-1, 0.2])
    stab = np.array([0.0, 0.0, 0.5, 1.0, 1.0, 0.0])
    numbers = check_figure(plot_similarity_vs_frequency(freq, stab, tmp_path, label="h/topk-8: seed0",
                                                        name="c", ylabel="feature stability"))
    assert numbers["dead_latents"] == 2
    ax = drawn[0]["axes"]
    dead = [c for c in ax.collections if "dead" in str(c.get_label())]
    assert len(dead) == 1 and dead[0].get_offsets().shape[0] == 2
    assert dead[0].get_zorder() > max(line.get_zorder() for line in ax.lines)  # not hidden by the bin means
    stability = {"h/topk-8": np.array([0.0, 0.5, 1.0, 1.0]), "h/relu-8": np.array([0.0, 0.0, 0.5, 1.0])}
    dead_masks = {"h/topk-8": np.array([True, False, False, False])}
    numbers = check_figure(plot_stability_histogram(stability, tmp_path, name="d", dead=dead_masks,
                                                    seeds={"h/topk-8": 2, "h/relu-8": 2}))
    assert numbers["h/topk-8"]["dead_counts"] == [1, 0, 0] and numbers["seeds"] == {"h/topk-8": 2, "h/relu-8": 2}
    bars = [p for p in drawn[1]["axes"].patches if p.get_fill()]
    lefts = sorted(round(p.get_x(), 6) for p in bars)
    assert len(bars) == 6 and len(set(lefts)) == 6  # side by side, never on top of each other
    assert "pooled over 2 seeds" in drawn[1]["axes"].get_ylabel()
