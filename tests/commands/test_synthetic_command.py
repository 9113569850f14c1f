"""End to end: `saeseeds synthetic` trains a tiny config and writes the ground truth, numbers and figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import saeseeds as ss
from helpers.synthetic_config import tiny_synthetic_toml
from saeseeds.cli import main
from saeseeds.data.synthetic import load_ground_truth

TINY = tiny_synthetic_toml(seeds=[0, 1], num_tokens=7680, eval_tokens=512, num_latents=64)


def test_synthetic_command_end_to_end(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "run"
    assert main(["synthetic", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ambiguous" in printed and "identifiable" in printed and "control" in printed
    truth = load_ground_truth(out)
    assert truth.num_features == 40
    report = out / "synthetic_report"
    results = json.loads((report / "recovery.json").read_text())
    summary = results["saes"]["synthetic/topk-64"]
    assert summary["seeds"] == [0, 1]
    assert list(summary["by_kind"]) == ["identifiable", "control", "ambiguous", "single"]
    for kind in ("identifiable", "control", "ambiguous"):  # the three group kinds side by side
        row = summary["by_kind"][kind]
        for name in ("shared_fraction", "recovered_fraction", "usage_max_angle_deg_mean", "latent_axis_cos_median"):
            assert name in row, (kind, name)
    assert [g["kind"] for g in summary["groups"]] == ["ambiguous", "control", "identifiable"]
    assert "usage_max_angle_deg_per_seed" in summary["groups"][0]
    for name in ("feature_recovery", "subspace_recovery", "sharing_vs_frequency", "latent_stability"):
        assert (report / f"topk-64_{name}.png").stat().st_size > 1000
    # analysing again without training gives the same numbers
    assert main(["synthetic", str(config), "--out", str(out), "--report-only"]) == 0
    again = json.loads((report / "recovery.json").read_text())["saes"]["synthetic/topk-64"]
    assert list(again["by_kind"]) == list(summary["by_kind"])
    for kind, row in summary["by_kind"].items():  # equal up to float rounding of the linear algebra
        assert again["by_kind"][kind] == pytest.approx(row, rel=1e-9, abs=1e-12), kind
    # the cross-seed result behind the sharing numbers is stored, and its stability is the report's
    cross = ss.CrossSeedResult.load(report / "cross_seed" / "topk-64")
    assert cross.rule == ss.SharingRule() and cross.names == ["seed0", "seed1"]
    stored = torch.load(report / "topk-64_recovery.pt", weights_only=True)
    for i in range(2):
        np.testing.assert_array_equal(stored["latent_stability"][i].numpy(), cross.stability(i))


def test_report_only_refuses_a_run_that_is_not_synthetic(tmp_path, capsys) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text(json.dumps({"config": {}, "data": {"source": "npy"}, "saes": []}))
    assert main(["synthetic", str(config), "--out", str(tmp_path / "other"), "--report-only"]) == 2
    assert "not a synthetic run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["run.json"]


COMPOSED = """
[data]
source = "synthetic"
hookpoint = "synthetic"

[synthetic]
kind = "composed"
d_in = 8
num_features = 6
composed_num_x = 3
composed_num_y = 3
composed_amplitude_correlation = 1.0
num_ambiguous_groups = 0
num_identifiable_groups = 0

[train]
seeds = [0, 1, 2]
batch_size = 256
num_tokens = 5120
eval_tokens = 512
lr = 3e-3
lr_warmup_steps = 2
progress = false

[[sae]]
architecture = "relu"
num_latents = 12
"""


def test_synthetic_command_composed_model(tmp_path, capsys) -> None:
    config = tmp_path / "composed.toml"
    config.write_text(COMPOSED)
    out = tmp_path / "run"
    assert main(["synthetic", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "composed model" in printed and "true features found per seed" in printed
    report = out / "synthetic_report"
    summary = json.loads((report / "recovery.json").read_text())["saes"]["synthetic/relu-12"]
    assert set(summary["by_kind"]) == {"x", "y"}
    comp = summary["composed"]
    assert comp["num_x"] == 3 and comp["amplitude_correlation"] == 1.0 and comp["threshold"] == 0.9
    assert all(sum(comp["latents_per_seed"][name][s] for name in comp["latents_per_seed"]) == 12 for s in range(3))
    assert len(comp["features_found_per_seed"]) == 3 and "latent_stability_by_class" in comp
    assert (report / "relu-12_composed.png").stat().st_size > 1000
    assert not (report / "relu-12_subspace_recovery.png").exists()  # no groups in the composed model


def test_the_python_api_is_the_commands_and_refuses_a_config_that_is_not_synthetic(tmp_path) -> None:
    import saeseeds.api.synthetic_experiment  # noqa: F401  (imported, the module must not shadow the function)
    from saeseeds.config import DataConfig, RunConfig
    from saeseeds.errors import ConfigError

    assert callable(ss.synthetic)
    with pytest.raises(ConfigError, match="data.source is 'npy'; the synthetic experiment needs 'synthetic'"):
        ss.synthetic(RunConfig(data=DataConfig(source="npy", path="acts.npy")), tmp_path / "out")
    assert not (tmp_path / "out").exists()
