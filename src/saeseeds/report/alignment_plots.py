"""Cross-seed alignment figures (Paulo & Belrose style): `<out>/<name>.png` plus the numbers behind it in `<name>.json`.

(a) decoder vs encoder cosine of each matched latent, coloured by same/different partner;
(b) latents found only in the base SAE vs number of other seeds;
(c) matched similarity vs firing frequency;
(d) histogram of per-latent feature stability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from saeseeds.align.pair import Alignment
from saeseeds.analysis.frequency import binned_by_frequency
from saeseeds.report.figures import save_figure

MAX_POINTS = 50_000
"""Scatter plots draw at most this many points (a seeded subsample); the JSON keeps all of them."""


def _subsample(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `limit` points (seeded)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def plot_dec_vs_enc(alignment: Alignment, out: str | Path, name: str = "fig_a_dec_vs_enc") -> Path:
    """Scatter of decoder vs encoder matched cosine, same partner (blue) vs different (orange)."""
    same = alignment.same_partner
    dec, enc = alignment.dec_cos, alignment.enc_cos
    keep = _subsample(len(dec))
    fig, ax = plt.subplots(figsize=(5.2, 5))
    for mask, colour, label in ((~same, "tab:orange", "different partner"), (same, "tab:blue", "same partner")):
        sel = keep[mask[keep]]
        ax.scatter(dec[sel], enc[sel], s=3, alpha=0.4, c=colour, label=f"{label} ({int(mask.sum())})",
                   rasterized=True)
    t = alignment.threshold
    ax.axvline(t, color="grey", lw=0.8, ls="--")
    ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("decoder cosine of matched latent")
    ax.set_ylabel("encoder cosine of matched latent")
    ax.set_title(f"{alignment.name_a} vs {alignment.name_b}: {alignment.shared_fraction:.1%} shared")
    ax.legend(loc="upper left", fontsize=8, markerscale=3)
    numbers = {"a": alignment.name_a, "b": alignment.name_b, "threshold": t,
               "dec_cos": dec.tolist(), "enc_cos": enc.tolist(), "same_partner": same.tolist(),
               "shared_fraction": alignment.shared_fraction}
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_only_in_base(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, name: str = "fig_b_only_in_base"
) -> Path:
    """Latents found only in the base SAE against the number of other seeds, one line per configuration."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    numbers: dict[str, Any] = {}
    for label, (mean, std) in curves.items():
        m = np.arange(len(mean))
        ax.plot(m, mean, marker="o", label=label)
        ax.fill_between(m, mean - std, mean + std, alpha=0.2)
        numbers[label] = {"num_other_seeds": m.tolist(), "mean": np.asarray(mean).tolist(),
                          "std": np.asarray(std).tolist()}
    ax.set_xlabel("number of other seeds M")
    ax.set_ylabel("latents found only in the base SAE")
    ax.set_title("latents shared with none of M other seeds")
    if curves:
        ax.legend(fontsize=8)
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_similarity_vs_frequency(
    frequency: np.ndarray, similarity: np.ndarray, out: str | Path, *, label: str = "",
    name: str = "fig_c_similarity_vs_frequency", ylabel: str = "matched decoder cosine",
) -> Path:
    """Matched similarity (or stability) of each latent against its firing frequency (log x), with bin means."""
    frequency = np.asarray(frequency, dtype=np.float64)
    similarity = np.asarray(similarity, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    keep = _subsample(len(frequency))
    alive = frequency[keep] > 0
    floor = frequency[frequency > 0].min() / 2 if (frequency > 0).any() else 1e-7
    x = np.where(frequency[keep] > 0, frequency[keep], floor)
    ax.scatter(x, similarity[keep], s=3, alpha=0.3, c=np.where(alive, "tab:blue", "tab:red"), rasterized=True)
    bins = binned_by_frequency(frequency, similarity)
    centres = [np.sqrt(lo * hi) if lo > 0 else floor for lo, hi in zip(bins["bin_low"], bins["bin_high"])]
    ax.plot(centres, bins["mean"], color="black", marker="o", label="bin mean")
    ax.set_xscale("log")
    ax.set_xlabel("firing frequency (share of tokens; dead latents in red at the left)")
    ax.set_ylabel(ylabel)
    ax.set_title(label or "similarity vs firing frequency")
    ax.legend(fontsize=8)
    numbers = {"label": label, "frequency": frequency.tolist(), "value": similarity.tolist(),
               "bins": bins, "ylabel": ylabel}
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_stability_histogram(
    stability: dict[str, np.ndarray], out: str | Path, name: str = "fig_d_stability_hist"
) -> Path:
    """Histogram of per-latent feature stability (fraction of the other seeds where shared)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    numbers: dict[str, Any] = {}
    for label, values in stability.items():
        values = np.asarray(values, dtype=np.float64)
        levels = np.unique(values)
        if 0 < len(levels) <= 11:  # one bar per attainable value k/(S-1)
            counts = np.array([(values == lv).sum() for lv in levels])
            ax.bar(levels, counts, width=0.8 / max(len(levels), 2), alpha=0.6, label=label)
            numbers[label] = {"values": levels.tolist(), "counts": counts.tolist()}
        else:
            counts, edges = np.histogram(values, bins=np.linspace(0, 1, 11))
            ax.hist(values, bins=edges, alpha=0.6, label=label)
            numbers[label] = {"bin_edges": edges.tolist(), "counts": counts.tolist()}
    ax.set_xlabel("feature stability (fraction of other seeds where shared)")
    ax.set_ylabel("latents")
    ax.set_title("per-latent stability across seeds")
    if stability:
        ax.legend(fontsize=8)
    return save_figure(fig, Path(out) / f"{name}.png", numbers)
