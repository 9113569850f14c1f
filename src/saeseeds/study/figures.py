"""A study's figures, error bars = sd over ordered seed pairs (or over pairs/orderings where stated):
Figure 4 (shared vs number of latents, vs k, vs training tokens), Figure 5 (layer x size, architectures at
matched L0), found-only-in-base vs number of seeds, and similarity vs firing frequency over all seeds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

from matplotlib.ticker import EngFormatter

from saeseeds.report.figures import plt, save_figure

Row = dict[str, Any]


def _final(rows: list[Row]) -> list[Row]:
    """Each set's row at its last milestone (end of training)."""
    last: dict[str, Row] = {}
    for row in rows:
        if row["set"] not in last or row["step"] > last[row["set"]]["step"]:
            last[row["set"]] = row
    return list(last.values())


def _groups(rows: Iterable[Row], key: Callable[[Row], Hashable]) -> dict[Hashable, list[Row]]:
    out: dict[Hashable, list[Row]] = defaultdict(list)
    for row in rows:
        out[key(row)].append(row)
    return dict(out)


def _k_text(row: Row) -> str:
    if row.get("k") is None:
        return ""
    return f" L0→{row['k']}" if row.get("target_l0") else f" k={row['k']}"


def _lines(ax: Any, rows: list[Row], x: str, key: Callable[[Row], Hashable], label: Callable[[Row], str],
           numbers: dict[str, Any]) -> None:
    """One line with error bars per group of rows, sorted by `x`; records the plotted numbers."""
    for _, group in sorted(_groups(rows, key).items(), key=lambda kv: str(kv[0])):
        group = sorted(group, key=lambda r: r[x])
        xs = [r[x] for r in group]
        ys = [r["shared_fraction_mean"] for r in group]
        es = [r["shared_fraction_sd"] for r in group]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label(group[0]))
        numbers[label(group[0])] = {"x": xs, "mean": ys, "sd": es}
    if rows:
        ax.legend(fontsize=7)


def _value_ticks(ax: Any, rows: list[Row], x: str) -> None:
    """Log-scaled x axis with a tick at each value present (no minor ticks)."""
    values = sorted({r[x] for r in rows if r.get(x) is not None})
    ax.set_xscale("log")
    if values:
        ax.set_xticks(values, [str(v) for v in values])
    ax.minorticks_off()


def figure4(rows: list[Row], out: Path, title: str) -> Path:
    """Shared fraction vs number of latents, vs k, vs training tokens (Paulo & Belrose Figure 4)."""
    final = _final(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    numbers: dict[str, Any] = {"size": {}, "k": {}, "tokens": {}}
    _lines(axes[0], final, "num_latents", lambda r: (r["hookpoint"], r["architecture"], r.get("k")),
           lambda r: f"{r['architecture']}{_k_text(r)} {r['hookpoint']}", numbers["size"])
    _value_ticks(axes[0], final, "num_latents")
    axes[0].set(xlabel="number of latents", title="vs number of latents")
    with_k = [r for r in final if r.get("k") is not None]
    _lines(axes[1], with_k, "k", lambda r: (r["hookpoint"], r["architecture"], r["num_latents"]),
           lambda r: f"{r['architecture']} n={r['num_latents']} {r['hookpoint']}", numbers["k"])
    _value_ticks(axes[1], with_k, "k")
    axes[1].set(xlabel="k (TopK) / target L0", title="vs k")
    _lines(axes[2], rows, "tokens", lambda r: r["set"], lambda r: r["sae_name"], numbers["tokens"])
    axes[2].set(xlabel="training tokens", title="vs training tokens (milestones of one run)")
    axes[2].xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M: raw counts overlap
    for ax in axes:
        ax.set_ylabel("shared fraction (mean ± sd over ordered seed pairs)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: shared fraction (Figure 4)")
    return save_figure(fig, out / "fig4_shared_vs_size_k_tokens.png", numbers)


def figure5(rows: list[Row], out: Path, title: str) -> Path:
    """Layer x size, and the architectures side by side with their achieved L0 (Paulo & Belrose Figure 5)."""
    final = _final(rows)
    hooks = sorted({r["hookpoint"] for r in final})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    numbers: dict[str, Any] = {"layer_size": {}, "architecture": {}}
    for row in final:
        row["_layer"] = hooks.index(row["hookpoint"])
    _lines(axes[0], final, "_layer", lambda r: (r["architecture"], r.get("k"), r["num_latents"]),
           lambda r: f"{r['architecture']}{_k_text(r)} n={r['num_latents']}", numbers["layer_size"])
    axes[0].set_xticks(range(len(hooks)), hooks, rotation=20, fontsize=7)
    axes[0].set(xlabel="hookpoint", title="layer x size", ylabel="shared fraction (mean ± sd over pairs)")
    bars = sorted(final, key=lambda r: (r["hookpoint"], r["num_latents"], str(r.get("k")), r["architecture"]))
    labels = [f"{r['architecture']}{_k_text(r)}\nn={r['num_latents']}" for r in bars]
    axes[1].bar(range(len(bars)), [r["shared_fraction_mean"] for r in bars],
                yerr=[r["shared_fraction_sd"] for r in bars], capsize=3,
                color=["C0" if r.get("target_l0") is None else "C1" for r in bars])
    for i, r in enumerate(bars):
        axes[1].annotate(f"L0 {r['l0_mean']:.1f}", (i, r["shared_fraction_mean"]), ha="center", va="bottom",
                         fontsize=7, xytext=(0, 8), textcoords="offset points")
        numbers["architecture"][labels[i].replace("\n", " ")] = {
            "mean": r["shared_fraction_mean"], "sd": r["shared_fraction_sd"], "l0": r["l0_mean"],
            "decoder_shared": r["decoder_shared_fraction_mean"], "hookpoint": r["hookpoint"]}
    axes[1].set_xticks(range(len(bars)), labels, fontsize=7)
    axes[1].set(title="architectures (achieved held-out L0 above each bar)", ylabel="shared fraction")
    for ax in axes:
        ax.grid(alpha=0.3)
    for row in final:
        row.pop("_layer", None)
    fig.suptitle(f"{title}: layer, size and architecture (Figure 5)")
    return save_figure(fig, out / "fig5_layer_size_architecture.png", numbers)


def only_in_base_figure(record: dict[str, Any], out: Path, title: str) -> Path:
    """Fraction of the base seed's latents found in none of M other seeds, M = 0 .. S-1."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, curve in sorted(record["only_in_base"].items()):
        ms = list(range(len(curve["mean"])))
        ax.errorbar(ms, curve["mean"], yerr=curve["sd"], marker="o", capsize=3, label=label)
    ax.set(xlabel="number of other seeds M", ylabel="fraction of base latents found in none",
           title=f"{title}: found only in base (mean ± sd over bases and orderings)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, out / "only_in_base_vs_seeds.png", record["only_in_base"])


def _floats(values: Iterable[Any]) -> list[float]:
    """Numbers of a curve as floats, empty bins (NaN in memory, null once read back from study.json) as NaN."""
    return [float("nan") if v is None else float(v) for v in values]


def similarity_figure(record: dict[str, Any], out: Path, title: str) -> Path:
    """Matched decoder cosine vs firing frequency, averaged over every ordered seed pair (Figure 3)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    curves = {k: v for k, v in record["similarity_by_frequency"].items() if v is not None}
    for label, curve in sorted(curves.items()):
        x, mean, sd = (_floats(curve[key]) for key in ("log10_frequency", "mean", "sd"))
        ax.errorbar(x, mean, yerr=sd, marker="o", capsize=3, label=label)
    ax.set(xlabel="log10 firing frequency on the held-out set (left bin: below 1e-4.5, dead included)",
           ylabel="matched decoder cosine (mean ± sd over pairs)",
           title=f"{title}: similarity vs frequency, all seeds (Figure 3)")
    if curves:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, out / "similarity_vs_frequency.png", curves)


def study_figures(record: dict[str, Any], out: Path, title: str) -> list[Path]:
    """Every figure of a study into `out` (figures/); each title names the config."""
    rows = record["rows"]
    return [figure4(rows, out, title), figure5(rows, out, title), only_in_base_figure(record, out, title),
            similarity_figure(record, out, title)]


def _num(value: Any) -> float:
    """A table value as a float (None / missing as NaN)."""
    return float("nan") if value is None else float(value)


def recipes_pareto(rows: list[Row], reference: str, out: Path, title: str, *, estimator: str = "shared") -> Path:
    """The recipe comparison's Pareto figure: mean stability (x) against held-out FVU (y), one point per recipe,
    error bars = sd over seeds; rows without cross-seed stability (pooled, long seed) as horizontal FVU lines."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    key = f"stability_{estimator}"
    numbers: dict[str, Any] = {"x": f"{key} (mean per-latent stability, mean ± sd over seeds)",
                               "y": "held-out FVU (mean ± sd over seeds)", "reference": reference, "points": {},
                               "lines": {}}
    for i, row in enumerate(r for r in rows if r.get(f"{key}_mean") is not None):
        x, y = _num(row[f"{key}_mean"]), _num(row.get("fvu_mean"))
        xe, ye = _num(row.get(f"{key}_sd")), _num(row.get("fvu_sd"))
        marker = "*" if row["recipe"] == reference else "o"
        ax.errorbar([x], [y], xerr=[xe], yerr=[ye], marker=marker, markersize=12 if marker == "*" else 7,
                    capsize=3, color=f"C{i % 10}", label=f"{row['recipe']} ({row.get('verdict') or '—'})")
        ax.annotate(row["recipe"], (x, y), xytext=(5, 5), textcoords="offset points", fontsize=7)
        numbers["points"][row["recipe"]] = {"stability_mean": x, "stability_sd": xe, "fvu_mean": y, "fvu_sd": ye,
                                            "verdict": row.get("verdict")}
    for j, row in enumerate(r for r in rows if r.get(f"{key}_mean") is None and r.get("fvu_mean") is not None):
        y = _num(row["fvu_mean"])
        ax.axhline(y, linestyle=("--", ":", "-.")[j % 3], color="black", linewidth=1,
                   label=f"{row['recipe']} (FVU only; {row['kind']})")
        numbers["lines"][row["recipe"]] = {"fvu": y, "kind": row.get("kind")}
    ax.set(xlabel=f"mean stability ({estimator}; higher: more reproducible)", ylabel="held-out FVU (lower: better)",
           title=f"{title}: stability vs FVU per recipe (★ reference {reference})")
    if numbers["points"] or numbers["lines"]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, out / "recipes_pareto.png", numbers)
