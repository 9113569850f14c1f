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
from matplotlib.patches import Patch
from torch import Tensor

from saeseeds.report.figures import save_figure


def titled(what: str, config: str = "", title: str = "") -> str:
    """A figure title: an explicit `title`, else what the figure shows, with the configuration on a second line."""
    return title or (f"{what}\n{config}" if config else what)


def pretty(name: str) -> str:
    """A readable set name: 'random_like_stable' → 'random like stable'."""
    return name.replace("_", " ")


def plot_stability_vs_stat(
    stability: Tensor, values: Tensor, path: str | Path, *, ylabel: str, log: bool = False, title: str = "",
    config: str = "",
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
    ax.set_title(titled(f"{ylabel} vs stability (latents of all seeds)", config, title), fontsize=10)
    numbers = {"ylabel": ylabel, "log10": log, "levels": levels, "values": [d.tolist() for d in data]}
    return save_figure(fig, path, numbers)


def plot_ablation(rows: Sequence[Mapping[str, Any]], metric: str, path: str | Path, *, title: str = "",
                  config: str = "") -> Path:
    """Bar per ablation set (`rows`: name, size, metrics, spread); random controls (grey) show ±1 std over their
    draws; each value is written above its error bar."""
    kept_rows = [r for r in rows if metric in r["metrics"]]
    names = [f"{pretty(r['name'])}\n(n = {r['size']})" for r in kept_rows]
    vals = [r["metrics"][metric] for r in kept_rows]
    stds = [r["spread"].get(metric, {}).get("std", 0.0) for r in kept_rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4.2))
    control = ["random" in r["name"] for r in kept_rows]
    colors = ["tab:gray" if c else "tab:blue" for c in control]
    ax.bar(range(len(vals)), vals, yerr=stds, color=colors, capsize=4)
    ax.set_xticks(range(len(vals)), names, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} with the set ablated")
    ax.set_title(titled(f"ablating latent sets: {metric}", config, title), fontsize=10)
    for i, (v, sd) in enumerate(zip(vals, stds)):
        if math.isfinite(v):
            top = v + (sd if math.isfinite(sd) else 0.0)
            ax.annotate(f"{v:.3g}", (i, top), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                        fontsize=7)
    ax.margins(y=0.12)
    handles = [Patch(color="tab:blue", label="set under test")]
    if any(control):
        handles.append(Patch(color="tab:gray", label="random control (mean ± 1 sd over draws)"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    kept = [r for r in rows if metric in r["metrics"]]
    numbers = {"metric": metric, "sets": [r["name"] for r in kept], "sizes": [r["size"] for r in kept],
               "values": vals, "std": stds}
    return save_figure(fig, path, numbers)


def plot_principal_angle_curves(
    curves: Mapping[str, Sequence[float]], path: str | Path, *, analytic: Mapping[str, float] | None = None,
    title: str = "", config: str = "",
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
        ax.plot(x, list(curve), style, label=f"{pretty(name)} (dim {len(curve)})")
    for name, value in (analytic or {}).items():
        if math.isfinite(value):
            ax.axhline(value, linestyle=":", color="black", linewidth=0.8, label=f"expected at random: {name} = {value:.3g}")
    ax.set_xlabel("principal angle index / dimension")
    ax.set_ylabel("cos² of principal angle")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(titled("span reproducibility across seeds", config, title), fontsize=10)
    numbers = {"cos2_principal_angles": {k: list(v) for k, v in curves.items()}, "analytic": dict(analytic or {})}
    return save_figure(fig, path, numbers)


def plot_group_ranks(sizes: Sequence[int], ranks: Sequence[int], path: str | Path, *, title: str = "",
                     config: str = "") -> Path:
    """Scatter of group size (latents across seeds) against the rank (90% energy) of the group's span, on log
    axes (sizes span 2 to hundreds); repeated points are drawn once, sized by how many groups they stand for."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    if sizes:
        pairs: dict[tuple[int, int], int] = {}
        for size, rank in zip(sizes, ranks):
            pairs[(int(size), int(rank))] = pairs.get((int(size), int(rank)), 0) + 1
        xs, ys, counts = zip(*[(x, y, n) for (x, y), n in pairs.items()])
        ax.scatter(xs, [max(y, 1) for y in ys], s=[12 * math.sqrt(n) for n in counts], alpha=0.6,
                   label="groups (area: how many)")
        top = max(max(sizes), max(ranks), 2)
        ax.plot([1, top], [1, top], ":", color="gray", label="rank = size")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("group size (latents, all seeds)")
    ax.set_ylabel("rank of the group's span (90% energy)")
    ax.set_title(titled("groups of close unstable latents", config, title), fontsize=10)
    return save_figure(fig, path, {"sizes": list(sizes), "rank90": list(ranks)})


def draw_config(res: Any, target: Path) -> list[str]:
    """Every figure and the contexts page of one analysed configuration (`analysis.instability.ConfigAnalysis`),
    drawn from its results into `target`; returns the file names in the order drawn."""
    from saeseeds.analysis.tables.seam import as_record

    files = []
    stab = torch.cat([torch.from_numpy(g.stability) for g in res.stability.groups])
    stats = res.triggers.stats
    fired = torch.cat([t.fire_count for t in stats]) > 0
    freq = torch.cat([t.frequency for t in stats])
    config = f"{res.hookpoint}/{res.sae_name}"  # named in every figure's title
    plot_stability_vs_stat(stab[fired], freq[fired], target / "stability_vs_frequency.png",
                           ylabel="firing frequency", log=True, config=config)
    files.append("stability_vs_frequency.png")
    if res.triggers.contexts is not None:  # token statistics exist
        for stat, label in (("top_token_share", "top token share"), ("entropy", "trigger entropy (nats)")):
            vals = torch.cat([getattr(t, stat) for t in stats])
            plot_stability_vs_stat(stab[fired], vals[fired], target / f"stability_vs_{stat}.png", ylabel=label,
                                   config=config)
            files.append(f"stability_vs_{stat}.png")
    rows = [as_record(r) for r in res.ablation.rows]
    for metric in ("fvu", "loss_recovered", "kl", "output_recovered"):
        if rows and metric in rows[0]["metrics"]:
            plot_ablation(rows, metric, target / f"ablation_{metric}.png", config=config)
            files.append(f"ablation_{metric}.png")
    sub = res.subspaces
    if sub.overlaps is not None:
        curves = {k: v.cos2_curve for k, v in sub.overlaps.items()}
        plot_principal_angle_curves(curves, target / "principal_angles.png",
                                    analytic={"r/d": sub.expected_random_mean_cos2}, config=config)
        files.append("principal_angles.png")
        grp = sub.groups.groups
        plot_group_ranks([g.size for g in grp], [g.rank90 for g in grp], target / "group_ranks.png", config=config)
        files.append("group_ranks.png")
    if res.triggers.contexts is not None and res.triggers.contexts.examples:
        files.append(_contexts_page(res, target / "contexts.html").name)
    return files


def _contexts_page(res: Any, path: Path) -> Path:
    """contexts.html: the first seed's least and most stable latents, each with its statistics and contexts."""
    from saeseeds.report.contexts_html import LatentSection, write_contexts_page

    base, t, ctx = res.stability.groups[0], res.triggers.stats[0], res.triggers.contexts

    def section(latent: int) -> LatentSection:
        line = (f"stability {float(base.stability[latent]):.2f} · frequency {float(t.frequency[latent]):.2e} · "
                f"top-token share {float(t.top_token_share[latent]):.2f} · entropy {float(t.entropy[latent]):.2f}")
        return LatentSection(latent, line, ctx.examples.get(latent, []))

    return write_contexts_page(path, f"{res.hookpoint} / {res.sae_name} (seed {res.seeds[0]})",
                               {"least stable": [section(i) for i in ctx.least_stable],
                                "most stable": [section(i) for i in ctx.most_stable]})
