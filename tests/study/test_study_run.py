"""A tiny real study: milestones saved by the trainer and compared once each, the grid expanded into [[sae]]
tables, per-[[sae]] learning rates, the L0 controller, resume without re-alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.records import absolute_paths, unstamped
from saeseeds.api.study import run_study
from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.config.study import StudyConfig, load_study_config
from saeseeds.errors import ConfigError
from saeseeds.sae import load_sae
from saeseeds.study.grid import grid_points, pass_configs
from saeseeds.training.member import Member
from saeseeds.training.run_dir import read_manifest

CONFIG = """
[data]
source = "npy"
path = "{path}"
[train]
seeds = [0, 1, 2]
batch_size = 64
num_tokens = 1920
lr = 0.01
lr_warmup_steps = 2
eval_tokens = 256
dead_tokens_threshold = 640
checkpoint_every = 1000                # only the final checkpoint: keeps the test fast
progress = false
[[sae]]
architecture = "topk"
[[sae]]
architecture = "relu"
l1_coefficient = 0.5
lr = 0.005
[study]
num_latents = [16]
k = [2]
milestones = [0.5]
match_l0 = true
"""


def sparse_rows(rows: int = 2400, d: int = 8, n_true: int = 20, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(n_true, d, generator=g), dim=1)
    codes = (torch.rand(rows, n_true, generator=g) < 0.1) * torch.rand(rows, n_true, generator=g) * 3
    return (codes @ dictionary + 0.3).numpy().astype(np.float32)


@pytest.fixture
def study_config(tmp_path: Path) -> Path:
    np.save(tmp_path / "acts.npy", sparse_rows())
    path = tmp_path / "study.toml"
    path.write_text(CONFIG.format(path=tmp_path / "acts.npy"))
    return path


def test_grid_names_templates_and_passes(study_config: Path) -> None:
    study, base = load_study_config(study_config, ["--study.num_latents", "16,32", "--study.k=2,4"])
    names = [p.name for p in grid_points(study, base)]
    assert names == ["topk-n16-k2", "topk-n16-k4", "topk-n32-k2", "topk-n32-k4",
                     "relu-n16-l02", "relu-n16-l04", "relu-n32-l02", "relu-n32-l04"]
    (cfg, points), = pass_configs(study, base)
    relu = next(s for s in cfg.saes if s.name == "relu-n32-l04")
    assert (relu.target_l0, relu.lr, relu.l1_coefficient, relu.num_latents) == (4.0, 0.005, 0.5, 32)
    assert cfg.train.milestones == [0.5, 1.0] and len(points) == 8
    star = load_study_config(study_config, ["--study.num_latents", "16,32", "--study.k=2,4",
                                            "--study.design", "star"])[0]
    assert [p.name for p in grid_points(star, base)] == ["topk-n16-k2", "topk-n16-k4", "topk-n32-k2",
                                                          "relu-n16-l02"]
    study.configs_per_pass = 3
    assert [len(p) for _, p in pass_configs(study, base)] == [3, 3, 2]
    base.data.source = "lm"
    with pytest.raises(ConfigError, match="saeseeds cache"):
        pass_configs(study, base)
    with pytest.raises(ConfigError, match="study.k\\[0\\]"):
        load_study_config(study_config, ["--study.k", "0"])
    with pytest.raises(ConfigError, match="target_l0"):
        SaeConfig(architecture="topk", target_l0=4).validate()
    with pytest.raises(ConfigError, match="train.milestones\\[0\\]"):
        TrainConfig(milestones=[1.5]).validate()


def test_study_milestones_table_and_resume(study_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_study(study_config, out, say=lambda m: None)
    run_dir = out / "runs" / "pass0"
    manifest = read_manifest(run_dir)
    assert [(m["step"], m["done"]) for m in manifest["milestones"]] == [(15, True), (30, True)]
    # the milestone copy is the SAE at step 15, not the final one
    half = load_sae(run_dir / "milestones" / "step00000015" / "activations" / "topk-n16-k2" / "seed0")
    end = load_sae(run_dir / "activations" / "topk-n16-k2" / "seed0")
    assert not torch.equal(half.W_dec, end.W_dec)
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 2 * 2 and sorted(set(table["tokens"])) == [960, 1920]
    assert set(table["sae_name"]) == {"topk-n16-k2", "relu-n16-l02"}
    assert table["fvu_mean"].notna().all() and table["l0_mean"].notna().all()
    topk = table[table["architecture"] == "topk"]
    assert (topk["l0_mean"] <= topk["k"] + 1e-9).all()
    relu = table[table["architecture"] == "relu"]
    assert relu["target_l0"].tolist() == relu["k"].astype(float).tolist()
    assert relu["penalty_coefficient_mean"].notna().all()
    record = json.loads((out / "study.json").read_text())
    assert record["schema"] == "saeseeds.study/1" and len(record["rows"]) == 4
    assert [m["compare"] for m in record["milestones"]] == ["compare/step00000015", "compare/step00000030"]
    assert record["milestones"][0]["paths"] == ["runs/pass0/milestones/step00000015"]
    assert unstamped(out) == [] and absolute_paths(out) == []  # every JSON stamped; paths relative to their file
    assert all((out / f).is_file() for f in record["figures"])
    assert json.loads((out / ".saeseeds-output.json").read_text())["kind"] == "study"
    # each milestone's comparison equals the table's numbers
    half_sets = json.loads((out / "compare" / "step00000015" / "summary.json").read_text())["sets"]
    by_label = {s["label"]: s["shared_fraction"]["mean"] for s in half_sets}
    for _, row in table[table["step"] == 15].iterrows():
        assert row["shared_fraction_mean"] == pytest.approx(by_label[row["set"]])
    # a second study into the same directory is refused; --resume keeps the stored comparisons (no re-alignment)
    with pytest.raises(ConfigError, match="already holds a study"):
        run_study(study_config, out, say=lambda m: None)
    stamp = (out / "compare" / "step00000015" / "summary.json").stat().st_mtime_ns
    again = run_study(study_config, out, resume=True, say=lambda m: None)
    assert (out / "compare" / "step00000015" / "summary.json").stat().st_mtime_ns == stamp
    assert pd.DataFrame(again.rows).equals(pd.DataFrame(result.rows))


def test_l0_controller_moves_the_coefficient_toward_the_target() -> None:
    x = torch.from_numpy(sparse_rows(rows=1280))
    train = TrainConfig(seeds=[0], batch_size=64, num_tokens=64 * 60, lr=0.01, lr_warmup_steps=2, progress=False)
    members = {}
    for target in (1.0, 12.0):
        cfg = SaeConfig(architecture="relu", num_latents=16, l1_coefficient=0.5, target_l0=target,
                        l1_warmup_steps=2, l0_control_until=1.0)
        member = Member.create("h", cfg, 0, 8, train, 60, torch.device("cpu"))
        for step in range(60):
            member.step(x[(step % 20) * 64:(step % 20 + 1) * 64], step)
        members[target] = member
    # a low target raises the L1 coefficient, a high one lowers it; the scale survives a state round trip
    assert members[1.0].penalty_scale > 1.0 > members[12.0].penalty_scale
    assert members[1.0].l0_ema < members[12.0].l0_ema
    state = members[1.0].state_dict()
    fresh = Member.create("h", members[1.0].sae.cfg, 0, 8, train, 60, torch.device("cpu"))
    fresh.load_state_dict(state)
    assert fresh.penalty_scale == members[1.0].penalty_scale
    assert fresh.penalty_coefficient == pytest.approx(0.5 * members[1.0].penalty_scale)


def test_per_sae_learning_rate() -> None:
    train = TrainConfig(seeds=[0], lr=0.01, lr_warmup_steps=7)
    member = Member.create("h", SaeConfig(num_latents=16, k=2, lr=0.002), 0, 8, train, 10, torch.device("cpu"))
    assert member.optimizer.param_groups[0]["initial_lr"] == 0.002
    default = Member.create("h", SaeConfig(num_latents=16, k=2), 0, 8, train, 10, torch.device("cpu"))
    assert default.optimizer.param_groups[0]["initial_lr"] == 0.01
    with pytest.raises(ConfigError, match="saes\\[0\\].lr"):
        SaeConfig(lr=-1.0).validate("saes[0]")
    assert StudyConfig(milestones=[0.5]).milestone_fractions() == [0.5, 1.0]
