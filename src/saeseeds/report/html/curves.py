"""Training curves of a run from its metrics.jsonl: evaluation lines (no `kind`) and, when the trainer wrote
them, throttled per-step training lines (`"kind": "train"`), one panel per metric, one colour per configuration.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib import pyplot as plt
from matplotlib.figure import Figure

EVAL_METRICS = ("fvu", "l0", "dead_fraction")
TRAIN_METRICS = ("loss", "fvu", "l0", "lr")
PANELS_PER_ROW = 3


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(evaluation lines, training lines, unreadable lines) of a metrics.jsonl; a torn last line is skipped."""
    evals: list[dict[str, Any]] = []
    train: list[dict[str, Any]] = []
    bad = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return evals, train, 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(rec, dict) or "step" not in rec or "key" not in rec:
            bad += 1
        elif rec.get("kind", "eval") == "train":
            train.append(rec)
        elif "kind" not in rec or rec.get("kind") == "eval":
            evals.append(rec)
    return evals, train, bad


def _series(lines: list[dict[str, Any]], metric: str) -> dict[str, tuple[list[float], list[float]]]:
    """key → (steps, values) of one metric, in step order, skipping lines without a number."""
    out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for rec in sorted(lines, key=lambda r: r["step"]):
        value = rec.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(rec["key"])][0].append(float(rec["step"]))
            out[str(rec["key"])][1].append(float(value))
    return dict(out)


def _config(key: str) -> str:
    """`<hook>/<name>` of a `<hook>/<name>/seed<k>` key."""
    return key.rsplit("/", 1)[0] if "/seed" in key else key


def draw_curves(evals: list[dict[str, Any]], train: list[dict[str, Any]], title: str) -> Figure:
    """One panel per metric present; training lines thin, evaluation points as markers on a line."""
    panels = [m for m in TRAIN_METRICS if _series(train, m)]
    panels += [m for m in EVAL_METRICS if m not in panels and _series(evals, m)]
    keys = sorted({str(r["key"]) for r in evals + train})
    configs = sorted({_config(k) for k in keys})
    colours = {c: plt.get_cmap("tab10")(i % 10) for i, c in enumerate(configs)}
    cols = min(PANELS_PER_ROW, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, panels):
        labelled: set[str] = set()
        for key, (steps, values) in _series(train, metric).items():
            cfg = _config(key)
            ax.plot(steps, values, lw=0.9, alpha=0.75, color=colours[cfg],
                    label=None if cfg in labelled else cfg)
            labelled.add(cfg)
        for key, (steps, values) in _series(evals, metric).items():
            cfg = _config(key)
            ax.plot(steps, values, marker="o", ms=4, lw=1.2, ls="--", color=colours[cfg],
                    label=None if cfg in labelled else cfg)
            labelled.add(cfg)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("step")
        if metric in ("loss", "lr"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
