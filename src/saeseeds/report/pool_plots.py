"""Pooling figures, drawn from `saeseeds pool`'s results (PNG + the numbers behind them as JSON, via
`report.figures.save_figure`): cluster support, stability of pooled vs single vs baseline pairs per split, and
held-out explained variance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from saeseeds.report.figures import save_figure


def plot_support(clusters: Any, chosen: np.ndarray, out: Path) -> Path:
    """Histogram of cluster support: every cluster vs the ones chosen for the pooled SAE (`clusters`: the pool's
    `pooling.Clusters`, read through its `support_histogram`; report draws results, it does not import pooling)."""
    every, picked = clusters.support_histogram(), clusters.support_histogram(chosen)
    x = np.arange(1, len(every) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.bar(x - 0.2, every, width=0.4, label=f"all clusters ({clusters.num_clusters})")
    ax.bar(x + 0.2, picked, width=0.4, label=f"pooled latents ({len(chosen)})")
    ax.set_xlabel("support (seeds the cluster appears in)")
    ax.set_ylabel("clusters")
    ax.set_xticks(x)
    ax.legend()
    ax.set_title(f"clusters by support ({clusters.edge_kind} edges, τ = {clusters.threshold:g})")
    return save_figure(fig, out / "support.png", {"support": x.tolist(), "all": every, "chosen": picked})


def plot_split_stability(record: dict[str, Any], out: Path) -> Path | None:
    """Per split: shared fraction of the pooled pair, of single-seed pairs across halves, of baseline pairs."""
    rows = record["splits"]
    if not rows:
        return None
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    single = [r["sf_single"] for r in rows]
    lo = [r["sf_single"] - min(r["sf_single_pairs"]) for r in rows]
    hi = [max(r["sf_single_pairs"]) - r["sf_single"] for r in rows]
    ax.bar(x - 0.25, single, width=0.25, yerr=[lo, hi], capsize=3, label="single seeds (mean, range of pairs)")
    ax.bar(x, [r["sf_pooled"] for r in rows], width=0.25, label="pooled halves")
    if rows[0].get("sf_baseline") is not None:
        ax.bar(x + 0.25, [r["sf_baseline"] for r in rows], width=0.25, label="baseline (same compute)")
    ax.set_xticks(x)
    ax.set_xticklabels(["/".join(r["a"]) + "\nvs " + "/".join(r["b"]) for r in rows], fontsize=7)
    ax.set_ylabel("shared fraction")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("stability: pooled SAEs of disjoint halves vs single seeds")
    numbers = [{k: r.get(k) for k in ("a", "b", "sf_pooled", "sf_single", "sf_single_pairs", "sf_baseline")}
               for r in rows]
    return save_figure(fig, out / "split_stability.png", {"splits": numbers})


def plot_explained_variance(record: dict[str, Any], out: Path) -> Path:
    """Held-out explained variance of each single seed, the pooled SAEs and the baseline seeds."""
    labels, values = [], []
    for name, e in record["heldout"]["single_seeds"].items():
        labels.append(name)
        values.append(e["explained_variance"])
    labels.append("pooled (all)")
    values.append(record["heldout"]["pooled_all"]["explained_variance"])
    for k, r in enumerate(record["splits"]):
        labels += [f"split {k} a", f"split {k} b"]
        values += [r["heldout_pooled"]["a"]["explained_variance"], r["heldout_pooled"]["b"]["explained_variance"]]
    for run in (record.get("baseline") or {}).get("runs", []):
        labels.append(f"baseline seed{run['seed']}")
        values.append(run["heldout"]["explained_variance"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(labels)), 3.8))
    colours = ["tab:blue" if lab.startswith("seed") else "tab:green" if lab.startswith("baseline") else "tab:orange"
               for lab in labels]
    ax.bar(np.arange(len(labels)), values, color=colours)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    low = min(values)
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(values) + 0.02))
    ax.set_ylabel("explained variance (held-out)")
    ax.set_title("held-out explained variance (1 − FVU)")
    return save_figure(fig, out / "explained_variance.png", dict(zip(labels, values)))


def plot_pool(record: dict[str, Any], clusters: Any, chosen: np.ndarray, out: Path) -> list[Path]:
    """Every pooling figure into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [plot_support(clusters, chosen, out), plot_split_stability(record, out),
             plot_explained_variance(record, out)]
    return [p for p in paths if p is not None]
