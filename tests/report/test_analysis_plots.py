"""Instability-analysis figures: PNG plus the plotted numbers as strict JSON."""

from __future__ import annotations

from pathlib import Path

import torch

from saeseeds.report.analysis_plots import (
    plot_ablation,
    plot_group_ranks,
    plot_principal_angle_curves,
    plot_stability_vs_stat,
)


def test_stability_vs_stat_groups_values_by_level(tmp_path: Path, check_figure) -> None:
    """Values are grouped by stability level; non-finite values and (with log) non-positive ones are dropped."""
    stability = torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 1.0])
    values = torch.tensor([1.0, float("nan"), 10.0, 100.0, 1000.0, -1.0])
    numbers = check_figure(plot_stability_vs_stat(stability, values, tmp_path / "s.png", ylabel="freq", log=True))
    assert numbers["levels"] == [0.0, 0.5, 1.0]
    assert numbers["values"] == [[0.0], [1.0], [2.0, 3.0]]


def test_ablation_with_a_nan_metric(tmp_path: Path, check_figure) -> None:
    """Rows lacking the metric are skipped; a NaN value becomes null in the sidecar."""
    rows = [
        {"name": "unstable", "size": 10, "metrics": {"mse": 0.5}, "spread": {}},
        {"name": "random", "size": 10, "metrics": {"mse": float("nan")}, "spread": {"mse": {"std": 0.1}}},
        {"name": "other", "size": 3, "metrics": {"kl": 1.0}, "spread": {}},
    ]
    numbers = check_figure(plot_ablation(rows, "mse", tmp_path / "a.png"))
    assert numbers == {"metric": "mse", "sets": ["unstable", "random"], "sizes": [10, 10],
                       "values": [0.5, None], "std": [0.0, 0.1]}


def test_principal_angles_and_group_ranks(tmp_path: Path, check_figure) -> None:
    """Curves and analytic lines, and group sizes vs ranks, are written as given."""
    curves = {"unstable": [0.9, 0.5], "random": [0.2]}
    numbers = check_figure(plot_principal_angle_curves(curves, tmp_path / "p.png", analytic={"r/d": 0.25}))
    assert numbers == {"cos2_principal_angles": curves, "analytic": {"r/d": 0.25}}
    numbers = check_figure(plot_group_ranks([2, 5], [2, 3], tmp_path / "g.png"))
    assert numbers == {"sizes": [2, 5], "rank90": [2, 3]}


def test_titles_name_the_configuration_and_group_ranks_use_log_axes(tmp_path: Path, monkeypatch) -> None:
    import saeseeds.report.analysis_plots as module

    seen: list = []
    original = module.save_figure

    def keep(fig, path, numbers=None):
        ax = fig.axes[0]
        seen.append((ax.get_title(), ax.get_xscale(), ax.get_yscale(),
                     [t.get_text() for t in ax.get_xticklabels()]))
        return original(fig, path, numbers)

    monkeypatch.setattr(module, "save_figure", keep)
    config = "blocks.3.mlp/topk-768"
    rows = [{"name": "random_like_stable", "size": 4, "metrics": {"fvu": 0.5}, "spread": {"fvu": {"std": 0.1}}}]
    plot_ablation(rows, "fvu", tmp_path / "a.png", config=config)
    plot_group_ranks([2, 3, 255], [1, 2, 40], tmp_path / "g.png", config=config)
    plot_principal_angle_curves({"unstable": [0.9, 0.5]}, tmp_path / "p.png", config=config)
    plot_stability_vs_stat(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]), tmp_path / "s.png", ylabel="x",
                           config=config)
    assert all(config in title for title, *_ in seen)
    assert "random like stable" in seen[0][3][0]  # readable set names
    assert seen[1][1:3] == ("log", "log")
