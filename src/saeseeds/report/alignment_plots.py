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
from matplotlib.ticker import MaxNLocator

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


def short_labels(labels: list[str]) -> tuple[dict[str, str], str]:
    """Legend labels without the prefix all of them share (the hookpoint), and that prefix (for the title)."""
    if len(labels) < 2:
        return {label: label.rsplit("/", 1)[-1] if "/" in label else label for label in labels}, (
            labels[0].rsplit("/", 1)[0] if labels and "/" in labels[0] else "")
    parts = [label.split("/") for label in labels]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return {label: "/".join(p[common:]) for label, p in zip(labels, parts)}, "/".join(parts[0][:common])


def plot_dec_vs_enc(alignment: Alignment, out: str | Path, name: str = "fig_a_dec_vs_enc", *,
                    label: str = "") -> Path:
    """Scatter of decoder vs encoder matched cosine, same partner (blue) vs different (orange); `label` names
    the configuration (hookpoint/config) in the title."""
    same = alignment.same_partner
    dec, enc = alignment.dec_cos, alignment.enc_cos
    keep = _subsample(len(dec))
    fig, ax = plt.subplots(figsize=(5.6, 5.4))
    t = alignment.threshold
    ax.fill_between([t, 1.02], t, 1.02, color="tab:green", alpha=0.08, lw=0, zorder=0)
    ax.text(1.0, 1.0, "shared\n(same partner,\nboth > τ)", ha="right", va="top", fontsize=7, color="darkgreen")
    for mask, colour, what in ((~same, "tab:orange", "different partner"), (same, "tab:blue", "same partner")):
        sel = keep[mask[keep]]
        ax.scatter(dec[sel], enc[sel], s=3, alpha=0.4, c=colour, label=f"{what} (n = {int(mask.sum())})",
                   rasterized=True)
    ax.axvline(t, color="grey", lw=0.8, ls="--")
    ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.annotate(f"τ = {t:g}", (t, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 3),
                textcoords="offset points", fontsize=7, color="grey")
    ax.set_xlabel("decoder cosine of matched latent")
    ax.set_ylabel("encoder cosine of matched latent")
    pair = f"{alignment.name_a} vs {alignment.name_b}"
    ax.set_title(f"{label}\n{pair}: {alignment.shared_fraction:.1%} shared" if label
                 else f"{pair}: {alignment.shared_fraction:.1%} shared", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, markerscale=3)
    numbers = {"label": label, "a": alignment.name_a, "b": alignment.name_b, "threshold": t,
               "dec_cos": dec.tolist(), "enc_cos": enc.tolist(), "same_partner": same.tolist(),
               "shared_fraction": alignment.shared_fraction}
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_only_in_base(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], out: str | Path, name: str = "fig_b_only_in_base"
) -> Path:
    """Latents found only in the base SAE against the number of other seeds, one line per configuration
    (legend without the shared hookpoint, which goes in the title); y from 0, integer x ticks."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    numbers: dict[str, Any] = {}
    short, prefix = short_labels(list(curves))
    for label, (mean, std) in curves.items():
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        m = np.arange(len(mean))
        line, = ax.plot(m, mean, marker="o", label=short[label])
        ax.fill_between(m, mean - std, mean + std, alpha=0.2, color=line.get_color(), lw=0)
        numbers[label] = {"num_other_seeds": m.tolist(), "mean": mean.tolist(), "std": std.tolist()}
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("number of other seeds M")
    ax.set_ylabel("latents found only in the base SAE")
    ax.set_title("latents shared with none of M other seeds" + (f"\n{prefix}" if prefix else ""), fontsize=10)
    if curves:
        ax.plot([], [], " ", label="band: ±1 sd over bases and orderings")
        ax.legend(fontsize=8)
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_similarity_vs_frequency(
    frequency: np.ndarray, similarity: np.ndarray, out: str | Path, *, label: str = "",
    name: str = "fig_c_similarity_vs_frequency", ylabel: str = "matched decoder cosine",
) -> Path:
    """Matched similarity (or stability) of each latent against its firing frequency (log x), with bin means.

    Dead latents (frequency 0) are drawn last, as red crosses at the left edge, so markers never hide them; a
    value with few distinct levels (stability k/(S-1)) is jittered vertically so its bands show density.
    """
    frequency = np.asarray(frequency, dtype=np.float64)
    similarity = np.asarray(similarity, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    keep = _subsample(len(frequency))
    alive = frequency[keep] > 0
    floor = frequency[frequency > 0].min() / 3 if (frequency > 0).any() else 1e-7
    y = similarity[keep]
    levels = np.unique(similarity[np.isfinite(similarity)])
    discrete = 0 < len(levels) <= 11
    if discrete:
        y = y + np.random.default_rng(0).uniform(-0.03, 0.03, len(y))
    bins = binned_by_frequency(frequency, similarity)
    centres = [np.sqrt(lo * hi) if lo > 0 else floor for lo, hi in zip(bins["bin_low"], bins["bin_high"])]
    ax.plot(centres, bins["mean"], color="black", marker="o", ms=4, lw=1.2, zorder=2, label="bin mean")
    ax.scatter(frequency[keep][alive], y[alive], s=3, alpha=0.3, c="tab:blue", rasterized=True, zorder=1,
               label="latent")
    n_dead = int((frequency == 0).sum())
    if n_dead:
        ax.scatter(np.full(int((~alive).sum()), floor), y[~alive], s=18, marker="x", c="tab:red", zorder=3,
                   label=f"dead latent (n = {n_dead}), drawn at the left edge")
    ax.set_xscale("log")
    ax.set_xlabel("firing frequency (share of held-out tokens)")
    ax.set_ylabel(ylabel + (" (jittered ±0.03)" if discrete else ""))
    ax.set_title(f"{ylabel} vs firing frequency" + (f"\n{label}" if label else ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, markerscale=2, frameon=False)
    numbers = {"label": label, "frequency": frequency.tolist(), "value": similarity.tolist(),
               "bins": bins, "ylabel": ylabel, "dead_latents": n_dead}
    return save_figure(fig, Path(out) / f"{name}.png", numbers)


def plot_stability_histogram(
    stability: dict[str, np.ndarray], out: str | Path, name: str = "fig_d_stability_hist", *,
    dead: dict[str, np.ndarray] | None = None, seeds: dict[str, int] | None = None,
) -> Path:
    """Per-latent feature stability (fraction of the other seeds where shared), pooled over seeds, as side-by-side
    bars per configuration; `dead` (masks aligned with `stability`) hatches the dead latents' share of each bar,
    `seeds` (number of seeds pooled) goes in the axis label."""
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    numbers: dict[str, Any] = {}
    short, prefix = short_labels(list(stability))
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in stability.items()}
    levels = np.unique(np.concatenate(list(arrays.values()))) if arrays else np.zeros(0)
    discrete = 0 < len(levels) <= 11
    edges = np.linspace(0, 1, 11)
    positions = levels if discrete else (edges[:-1] + edges[1:]) / 2
    step = float(np.min(np.diff(positions))) if len(positions) > 1 else 1.0
    width = 0.8 * step / max(len(arrays), 1)
    hatched = False
    for i, (label, values) in enumerate(arrays.items()):
        if discrete:
            counts = np.array([(values == lv).sum() for lv in levels])
        else:
            counts, _ = np.histogram(values, bins=edges)
        x = positions + (i - (len(arrays) - 1) / 2) * width
        ax.bar(x, counts, width=width, label=short[label])
        entry: dict[str, Any] = ({"values": levels.tolist()} if discrete else {"bin_edges": edges.tolist()}) | {
            "counts": counts.tolist()}
        mask = None if dead is None else dead.get(label)
        if mask is not None and np.asarray(mask).any():
            mask = np.asarray(mask, dtype=bool)
            dead_counts = (np.array([(values[mask] == lv).sum() for lv in levels]) if discrete
                           else np.histogram(values[mask], bins=edges)[0])
            ax.bar(x, dead_counts, width=width, fill=False, hatch="///", edgecolor="black", lw=0,
                   label=None if hatched else "dead latents (hatched part)")
            hatched = True
            entry["dead_counts"] = dead_counts.tolist()
        numbers[label] = entry
    if discrete:
        ax.set_xticks(levels, [f"{lv:.2g}" for lv in levels])
    ax.set_xlabel("feature stability (fraction of other seeds where shared)")
    pooled = sorted(set((seeds or {}).values()))
    ax.set_ylabel(f"latents (pooled over {pooled[0]} seeds)" if len(pooled) == 1 else "latents (pooled over seeds)")
    ax.set_title("per-latent stability across seeds" + (f"\n{prefix}" if prefix else ""), fontsize=10)
    if stability:
        ax.legend(fontsize=8)
    return save_figure(fig, Path(out) / f"{name}.png", numbers | ({"seeds": dict(seeds)} if seeds else {}))
