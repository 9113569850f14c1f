"""Synthetic-experiment figures on a real recovery result: PNG plus strict-JSON numbers for each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from saeseeds.analysis.recovery import RecoveryResult, evaluate_recovery
from saeseeds.config import SyntheticConfig
from saeseeds.data.synthetic import KIND_NAMES, GroundTruth, SyntheticModel
from saeseeds.report.synthetic_plots import (
    plot_feature_recovery,
    plot_latent_stability,
    plot_sharing_vs_frequency,
    plot_subspace_recovery,
)


@pytest.fixture(scope="module")
def scored() -> tuple[GroundTruth, RecoveryResult]:
    """Two noisy copies of the true dictionary (plus random latents), scored against the truth."""
    cfg = SyntheticConfig(d_in=16, num_features=20, num_ambiguous_groups=1, num_identifiable_groups=1,
                          group_rank=2, seed=5)
    model = SyntheticModel(cfg)
    truth = model.truth
    saes = []
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        dec = torch.cat([truth.directions + 0.05 * torch.randn(truth.directions.shape, generator=g),
                         torch.randn(4, truth.d_in, generator=g)])
        saes.append((dec, dec.clone()))
    return truth, evaluate_recovery(truth, saes)


def test_feature_and_subspace_recovery(tmp_path: Path, scored, check_figure) -> None:
    """Per-kind cosines and per-group angles reach the sidecar; the shapes follow seeds × groups."""
    truth, result = scored
    numbers = check_figure(plot_feature_recovery(truth, result, tmp_path / "f.png", "title"))
    assert set(numbers["kinds"]) == {KIND_NAMES[int(k)] for k in truth.kind.unique()}  # the kinds present
    assert numbers["threshold"] == result.rule.threshold
    assert all(c > 0.9 for per_kind in numbers["hungarian_cos"] for c in per_kind)
    numbers = check_figure(plot_subspace_recovery(truth, result, tmp_path / "s.png", 80.0))
    assert len(numbers["matched_span_max_angle_deg"]) == 2
    assert len(numbers["matched_span_max_angle_deg"][0]) == truth.num_groups
    assert numbers["random_baseline_deg"] == 80.0 and numbers["used_subspace_max_angle_deg"] is None


def test_sharing_and_latent_stability(tmp_path: Path, scored, check_figure) -> None:
    """One entry per true feature; latent stability keeps NaN (latents without a partner) as null."""
    truth, result = scored
    numbers = check_figure(plot_sharing_vs_frequency(truth, result, tmp_path / "h.png"))
    assert len(numbers["firing_prob"]) == len(numbers["kind"]) == truth.num_features
    numbers = check_figure(plot_latent_stability(result, tmp_path / "l.png"))
    assert numbers["kind_names"] == list(KIND_NAMES)
    assert torch.tensor(numbers["latent_kind"]).shape == result.latent_kind.shape


def test_latent_stability_title_names_the_configuration_and_bars_do_not_overlap(
    tmp_path: Path, scored, monkeypatch
) -> None:
    import saeseeds.report.synthetic_plots as module

    seen: list = []
    original = module.save_figure

    def keep(fig, path, numbers=None):
        seen.append(fig.axes[0])
        return original(fig, path, numbers)

    monkeypatch.setattr(module, "save_figure", keep)
    _, result = scored
    plot_latent_stability(result, tmp_path / "l.png", "activations/topk-24")
    ax = seen[0]
    assert "activations/topk-24" in ax.get_title() and "ground truth" in ax.get_title()
    lefts = [round(p.get_x(), 6) for p in ax.patches]
    assert lefts and len(set(lefts)) == len(lefts)
