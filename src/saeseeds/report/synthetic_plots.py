"""Figures of the synthetic ground-truth experiment: feature vs subspace recovery, sharing vs frequency, and the
composed-features model's latent classes (PNG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import torch

from saeseeds.analysis.recovery import RecoveryResult
from saeseeds.data.synthetic import (
    AMBIGUOUS,
    COMPOSED_X,
    COMPOSED_Y,
    CONTROL,
    IDENTIFIABLE,
    KIND_NAMES,
    SINGLE,
    GroundTruth,
)
from saeseeds.report.figures import save_figure

if TYPE_CHECKING:
    from saeseeds.analysis.composed import ComposedClassification

KIND_COLORS = {SINGLE: "tab:gray", IDENTIFIABLE: "tab:blue", AMBIGUOUS: "tab:red", CONTROL: "tab:orange",
               COMPOSED_X: "tab:green", COMPOSED_Y: "tab:purple"}
KIND_ORDER = (IDENTIFIABLE, CONTROL, AMBIGUOUS, SINGLE, COMPOSED_X, COMPOSED_Y)


def plot_feature_recovery(truth: GroundTruth, result: RecoveryResult, path: Path, title: str = "") -> Path:
    """Per kind of true feature: matched cosine (all seeds) and cross-seed sharing of the matched latents."""
    kinds = [k for k in KIND_ORDER if bool((truth.kind == k).any())]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    cos_data = [result.hungarian_cos[:, truth.kind == k].flatten().nan_to_num(0.0).numpy() for k in kinds]
    share_data = [result.feature_shared[truth.kind == k].numpy() for k in kinds]
    labels = [KIND_NAMES[k] for k in kinds]
    axes[0].boxplot(cos_data, tick_labels=labels)
    axes[0].axhline(result.recovery_threshold, ls="--", c="k", lw=0.8, label="recovery threshold")
    axes[0].set_ylabel("cosine of Hungarian-matched latent")
    axes[0].set_title("feature-level recovery (every seed)")
    axes[0].legend(loc="lower left", fontsize=8)
    means = [float(d.mean()) for d in share_data]
    axes[1].bar(labels, means, color=[KIND_COLORS[k] for k in kinds])
    for i, d in enumerate(share_data):
        axes[1].scatter([i] * len(d), d, s=8, c="k", alpha=0.3)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("fraction of seed pairs whose matched latents are shared")
    axes[1].set_title(f"cross-seed sharing (τ = {result.rule.threshold})")
    if title:
        fig.suptitle(title, y=1.03)
    numbers = {"kinds": labels, "hungarian_cos": [d.tolist() for d in cos_data],
               "feature_shared": [d.tolist() for d in share_data],
               "recovery_threshold": result.recovery_threshold, "threshold": result.rule.threshold}
    return save_figure(fig, path, numbers)


def plot_subspace_recovery(
    truth: GroundTruth, result: RecoveryResult, path: Path, random_baseline_deg: float | None = None, title: str = ""
) -> Path:
    """Per group and seed: the largest principal angle between the true subspace and the SAE's subspace."""
    fig, ax = plt.subplots(figsize=(10, 4))
    num_groups, num_seeds = truth.num_groups, result.group_angles.shape[0]
    xs = torch.arange(num_groups).double()
    matched = torch.rad2deg(result.group_angles.max(dim=2).values)  # [S, G]
    for s in range(num_seeds):
        jitter = (s - (num_seeds - 1) / 2) * 0.06
        ax.scatter(xs + jitter, matched[s], marker="x", c="tab:gray", s=18, label="matched-latent span" if s == 0 else None)
        if result.usage_angles is not None:
            used = torch.rad2deg(result.usage_angles[s].max(dim=1).values)
            colors = [KIND_COLORS[int(k)] for k in truth.group_kind]
            ax.scatter(xs + jitter, used, c=colors, s=22, label="subspace the SAE uses" if s == 0 else None)
    if random_baseline_deg is not None:
        ax.axhline(random_baseline_deg, ls="--", c="k", lw=0.8, label="random subspace (median)")
    ax.set_xticks(xs.tolist())
    ax.set_xticklabels([f"{g}\n{KIND_NAMES[int(k)][:5]}" for g, k in enumerate(truth.group_kind)], fontsize=8)
    ax.set_ylabel("largest principal angle (degrees)")
    ax.set_ylim(0, 92)
    ax.set_title("subspace recovery per group (one point per seed; red ambiguous, orange control, blue identifiable)")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, y=1.03)
    usage = result.usage_angles
    numbers = {"group_kind": [KIND_NAMES[int(k)] for k in truth.group_kind],
               "matched_span_max_angle_deg": matched.tolist(),
               "used_subspace_max_angle_deg": None if usage is None else torch.rad2deg(usage.max(dim=2).values).tolist(),
               "random_baseline_deg": random_baseline_deg}
    return save_figure(fig, path, numbers)


def plot_sharing_vs_frequency(truth: GroundTruth, result: RecoveryResult, path: Path, title: str = "") -> Path:
    """Cross-seed sharing and recovery of each true feature against its firing probability (log x)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    freq = truth.firing_prob.double()
    for k in KIND_ORDER:
        mask = truth.kind == k
        if not bool(mask.any()):
            continue
        axes[0].scatter(freq[mask], result.feature_shared[mask], s=12, alpha=0.6, c=KIND_COLORS[k], label=KIND_NAMES[k])
        axes[1].scatter(freq[mask], result.feature_recovered[mask], s=12, alpha=0.6, c=KIND_COLORS[k])
    singles = torch.nonzero(truth.kind == SINGLE).flatten()
    if singles.numel() >= 8:
        order = singles[torch.argsort(freq[singles])]
        for chunk in torch.tensor_split(order, 6):
            centre = math.exp(float(freq[chunk].log().mean()))
            axes[0].plot(centre, float(result.feature_shared[chunk].mean()), "ks", ms=6)
            axes[1].plot(centre, float(result.feature_recovered[chunk].mean()), "ks", ms=6)
    axes[0].set_ylabel("fraction of seed pairs sharing the matched latents")
    axes[1].set_ylabel(f"fraction of seeds recovering it (cos > {result.recovery_threshold})")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("true firing probability")
        ax.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=8)
    axes[0].set_title("sharing vs frequency (squares: binned single features)")
    axes[1].set_title("recovery vs frequency")
    if title:
        fig.suptitle(title, y=1.03)
    numbers = {"firing_prob": freq.tolist(), "kind": [KIND_NAMES[int(k)] for k in truth.kind],
               "feature_shared": result.feature_shared.tolist(),
               "feature_recovered": result.feature_recovered.tolist()}
    return save_figure(fig, path, numbers)


def plot_latent_stability(result: RecoveryResult, path: Path, title: str = "") -> Path:
    """Per-latent stability (fraction of other seeds sharing it) by the kind of truth it lies in: side-by-side
    bars of the share of each kind's latents at each attainable level; `title` names the configuration."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    stability = result.latent_stability
    finite = stability[~torch.isnan(stability)]
    levels = sorted({round(float(v), 4) for v in finite.tolist()})
    discrete = 0 < len(levels) <= 11
    edges = torch.linspace(0, 1, 11)
    centres = levels if discrete else ((edges[:-1] + edges[1:]) / 2).tolist()
    kinds = [k for k in KIND_ORDER if bool(((result.latent_kind == k) & ~torch.isnan(stability)).any())]
    step = min((b - a for a, b in zip(centres, centres[1:])), default=1.0)
    width = 0.8 * step / max(len(kinds), 1)
    for i, k in enumerate(kinds):
        vals = stability[(result.latent_kind == k) & ~torch.isnan(stability)].double()
        if discrete:
            counts = torch.tensor([float(((vals - lv).abs() < 1e-3).sum()) for lv in levels])
        else:
            counts = torch.histc(vals, bins=10, min=0.0, max=1.0)
        share = (counts / counts.sum()).tolist()
        xs = [c + (i - (len(kinds) - 1) / 2) * width for c in centres]
        ax.bar(xs, share, width=width, color=KIND_COLORS[k], label=f"{KIND_NAMES[k]} (n = {vals.numel()})")
    if discrete:
        ax.set_xticks(levels, [f"{lv:.2g}" for lv in levels])
    ax.set_xlabel("latent stability (fraction of other seeds where it is shared)")
    ax.set_ylabel("share of the kind's latents (all seeds)")
    ax.legend(fontsize=8)
    what = "stability of latents by the ground truth they lie in"
    ax.set_title(f"{what}\n{title}" if title else what, fontsize=10)
    numbers = {"latent_stability": result.latent_stability.tolist(),
               "latent_kind": result.latent_kind.tolist(), "kind_names": list(KIND_NAMES)}
    return save_figure(fig, path, numbers)


def plot_composed(
    summary: dict[str, Any], classes: Sequence[ComposedClassification], path: Path, title: str = ""
) -> Path:
    """Composed model: latent classes per seed (stacked bars) and the in-plane angles of plane-aligned latents."""
    from saeseeds.analysis.composed import COMPOSED_CLASSES

    colors = {"feature": "tab:blue", "composed": "tab:red", "plane": "tab:orange", "other": "tab:gray",
              "dead": "lightgray"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    num_seeds = len(classes)
    bottom = [0] * num_seeds
    for name in COMPOSED_CLASSES:
        values = summary["latents_per_seed"][name]
        axes[0].bar(range(num_seeds), values, bottom=bottom, color=colors[name], label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes[0].set_xticks(range(num_seeds))
    axes[0].set_xlabel("seed (index)")
    axes[0].set_ylabel("latents")
    axes[0].set_title(f"latent classes (decoder cos ≥ {summary['threshold']}), ρ = {summary['amplitude_correlation']}")
    axes[0].legend(fontsize=8)
    angles = torch.cat([c.plane_angle_deg for c in classes])
    angles = angles[~torch.isnan(angles)]
    axes[1].hist(angles.numpy(), bins=torch.linspace(-10, 100, 23).tolist(), color="tab:orange")
    for x, label in ((0, "x"), (45, "x+y"), (90, "y")):
        axes[1].axvline(x, ls="--", c="k", lw=0.8)
        axes[1].text(x, axes[1].get_ylim()[1] * 0.95, label, ha="center", fontsize=8)
    axes[1].set_xlabel("in-plane angle from x_i toward y_j (degrees)")
    axes[1].set_ylabel("latents in a composition plane (all seeds)")
    axes[1].set_title("which basis of the x_i–y_j plane the latents use")
    if title:
        fig.suptitle(title, y=1.03)
    numbers = {"summary": summary, "plane_angle_deg": angles.tolist()}
    return save_figure(fig, path, numbers)
