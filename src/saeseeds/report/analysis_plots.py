"""Figures of the instability analysis (PNG via `report.figures.save_figure`, with the plotted numbers as JSON).

Each function takes plain numbers (lists / tensors already computed by `saeseeds.analysis`) and writes one file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from saeseeds.report.figures import save_figure


def plot_stability_vs_stat(
    stability: Tensor, values: Tensor, path: str | Path, *, ylabel: str, log: bool = False, title: str = ""
) -> Path:
    """Box plot of a per-latent statistic at each stability level (fraction of other seeds sharing it)."""
    stability = stability.double().cpu()
    values = values.double().cpu()
    ok = torch.isfinite(values) & torch.isfinite(stability)
    if log:
        ok &= values > 0
    levels = sorted({round(float(s), 4) for s in stability[ok].tolist()})
    data = []
    for level in levels:
        sel = values[ok & ((stability - level).abs() < 1e-3)]
        data.append((sel.log10() if log else sel).numpy())
    fig, ax = plt.subplots(figsize=(6, 4))
    if data:
        ax.boxplot(data, showfliers=False)
        gen = torch.Generator().manual_seed(0)
        for i, d in enumerate(data, start=1):
            jitter = (torch.rand(len(d), generator=gen) - 0.5) * 0.3 + i
            ax.scatter(jitter.numpy(), d, s=3, alpha=0.25, color="tab:blue")
        ax.set_xticks(range(1, len(levels) + 1), [f"{lv:.2g}\n(n={len(d)})" for lv, d in zip(levels, data)])
    ax.set_xlabel("stability (fraction of other seeds where shared)")
    ax.set_ylabel(f"log10 {ylabel}" if log else ylabel)
    ax.set_title(title or f"{ylabel} vs stability")
    numbers = {"ylabel": ylabel, "log10": log, "levels": levels, "values": [d.tolist() for d in data]}
    return save_figure(fig, path, numbers)


def plot_ablation(rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, *, title: str = "") -> Path:
    """Bar per ablation set (`rows`: name, size, metrics, spread); random controls show ±1 std and min–max."""
    names = [f"{r['name']}\n({r['size']})" for r in rows if metric in r["metrics"]]
    vals = [r["metrics"][metric] for r in rows if metric in r["metrics"]]
    stds = [r["spread"].get(metric, {}).get("std", 0.0) for r in rows if metric in r["metrics"]]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    colors = ["tab:gray" if "random" in n else "tab:blue" for n in names]
    ax.bar(range(len(vals)), vals, yerr=stds, color=colors, capsize=4)
    ax.set_xticks(range(len(vals)), names, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(title or f"ablation: {metric}")
    for i, v in enumerate(vals):
        if math.isfinite(v):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=7)
    kept = [r for r in rows if metric in r["metrics"]]
    numbers = {"metric": metric, "sets": [r["name"] for r in kept], "sizes": [r["size"] for r in kept],
               "values": vals, "std": stds}
    return save_figure(fig, path, numbers)


def plot_principal_angle_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, *, analytic: Mapping[str, float] | None = None,
    title: str = "",
) -> Path:
    """cos² of the k-th principal angle against k / dimension, one line per set (unstable, stable, random …).

    `analytic` adds horizontal lines, e.g. the random-subspace expectation r/d of each set.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        if not curve:
            continue
        x = [(i + 0.5) / len(curve) for i in range(len(curve))]
        style = "--" if "random" in name else "-"
        ax.plot(x, list(curve), style, label=f"{name} (dim {len(curve)})")
    for name, value in (analytic or {}).items():
        if math.isfinite(value):
            ax.axhline(value, linestyle=":", color="black", linewidth=0.8)
            ax.annotate(name, (1.0, value), ha="right", va="bottom", fontsize=7)
    ax.set_xlabel("principal angle index / dimension")
    ax.set_ylabel("cos² of principal angle")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(title or "span reproducibility across seeds")
    numbers = {"cos2_principal_angles": {k: list(v) for k, v in curves.items()}, "analytic": dict(analytic or {})}
    return save_figure(fig, path, numbers)


def plot_group_ranks(sizes: Sequence[int], ranks: Sequence[int], path: str | Path, *, title: str = "") -> Path:
    """Scatter of group size (latents across seeds) against the rank (90% energy) of the group's span."""
    fig, ax = plt.subplots(figsize=(5, 4))
    if sizes:
        ax.scatter(sizes, ranks, s=12, alpha=0.6)
        top = max(max(sizes), max(ranks))
        ax.plot([1, top], [1, top], ":", color="gray", label="rank = size")
        ax.legend(fontsize=7)
    ax.set_xlabel("group size (latents)")
    ax.set_ylabel("rank of the group's span (90% energy)")
    ax.set_title(title or "groups of close unstable latents")
    return save_figure(fig, path, {"sizes": list(sizes), "rank90": list(ranks)})
