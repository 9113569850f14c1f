"""Every config field is range-checked up front: a bad value is one ConfigError line naming field, value and range."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from saeseeds.cli import main
from saeseeds.config import (
    DataConfig,
    LmConfig,
    RunConfig,
    SaeConfig,
    SyntheticConfig,
    TrainConfig,
    load_config,
)
from saeseeds.errors import ConfigError
from saeseeds.sae import SparseAutoencoder
from saeseeds.training import train_run

SOURCE_OF = {"lm": "lm", "synthetic": "synthetic"}
"""Sections validated only when the source uses them, and the source that does."""

# (dotted field, bad value, architecture of saes[0] when the field is architecture-specific)
CASES: list[tuple[str, Any, str]] = [
    ("data.source", "parquet", ""),
    ("data.path", "", ""),
    ("data.tensor", 3, ""),
    ("data.hookpoint", "", ""),
    ("data.eval_fraction", -0.5, ""),
    ("data.eval_fraction", 1.5, ""),
    ("data.eval_fraction", 1.0, ""),
    ("data.shuffle_seed", -1, ""),
    ("data.shuffle", "yes", ""),
    ("train.seeds", [], ""),
    ("train.seeds", [1, 1], ""),
    ("train.seeds", [-1], ""),
    ("train.batch_size", 0, ""),
    ("train.batch_size", -5, ""),
    ("train.num_tokens", 0, ""),
    ("train.num_tokens", 100, ""),  # less than one batch of 4096
    ("train.lr", -1e-3, ""),
    ("train.lr", math.nan, ""),
    ("train.lr", math.inf, ""),
    ("train.lr_warmup_steps", -1, ""),
    ("train.lr_decay", "exponential", ""),
    ("train.lr_decay_start", 1.5, ""),
    ("train.adam_beta1", 1.0, ""),
    ("train.adam_beta2", -0.1, ""),
    ("train.adam_eps", 0.0, ""),
    ("train.grad_clip", -1.0, ""),
    ("train.dead_tokens_threshold", 0, ""),
    ("train.eval_every", -1, ""),
    ("train.eval_tokens", 0, ""),
    ("train.checkpoint_every", -1, ""),
    ("train.device", "gpu", ""),
    ("train.dtype", "float16", ""),
    ("train.normalize_activations", "no", ""),
    ("train.store_eval_tokens", -1, ""),
    ("train.progress", 1, ""),
    ("train.lm_loss", "yes", ""),
    ("train.log_every", -1, ""),
    ("train.tensorboard", "yes", ""),
    ("train.wandb_project", 5, ""),
    ("train.batched_seeds", "yes", ""),
    ("train.milestones", [1.5], ""),
    ("train.milestones", [0.0], ""),
    ("train.init_sample_tokens", 0, ""),
    ("saes.architecture", "gated", "topk"),
    ("saes.num_latents", -5, "topk"),
    ("saes.expansion_factor", 0, "topk"),
    ("saes.expansion_factor", -2, "relu"),
    ("saes.k", 0, "topk"),
    ("saes.k", -3, "batchtopk"),
    ("saes.k", 2000, "topk"),  # num_latents is 1024 below
    ("saes.name", "a/b", "topk"),
    ("saes.name", "..", "topk"),
    ("saes.normalize_decoder", "x", "topk"),
    ("saes.auxk_alpha", -0.1, "topk"),
    ("saes.auxk_k", -1, "batchtopk"),
    ("saes.batchtopk_threshold_momentum", 1.0, "batchtopk"),
    ("saes.batchtopk_threshold_momentum", -0.1, "batchtopk"),
    ("saes.l1_coefficient", -1.0, "relu"),
    ("saes.l1_warmup_steps", -1, "relu"),
    ("saes.jumprelu_init_threshold", 0.0, "jumprelu"),
    ("saes.jumprelu_bandwidth", 0.0, "jumprelu"),
    ("saes.jumprelu_bandwidth", -0.05, "jumprelu"),
    ("saes.l0_coefficient", -1.0, "jumprelu"),
    ("saes.l0_warmup_steps", -5, "jumprelu"),
    ("saes.lr", -1e-3, ""),
    ("saes.lr_warmup_steps", -1, ""),
    ("saes.target_l0", -2.0, "relu"),
    ("saes.target_l0", 16.0, "topk"),  # topk's L0 is k: nothing to steer
    ("saes.l0_control_until", 0.0, "relu"),
    ("saes.matryoshka_prefixes", [64, 32], "matryoshka"),  # not strictly increasing
    ("saes.matryoshka_prefixes", [4096], "matryoshka"),  # more than num_latents = 1024
    ("saes.matryoshka_prefixes", [0, 64], "matryoshka"),
    ("saes.rasae_delta", -1.0, "rasae"),
    ("saes.rasae_delta", math.nan, "rasae"),
    ("saes.rasae_candidates", -1, "rasae"),
    ("saes.init_encoder", "orthogonal", ""),
    ("saes.init_decoder", "pca", ""),
    ("saes.init_decoder", "kmeans", "rasae"),  # rasae's atoms start on its own candidates
    ("saes.init_b_dec", "median", ""),
    ("lm.model", 5, ""),
    ("lm.revision", "", ""),
    ("lm.hookpoints", [""], ""),
    ("lm.hookpoints", ["a.mlp", "a.mlp"], ""),
    ("lm.hook_input", "x", ""),
    ("lm.dataset", 1, ""),
    ("lm.dataset_config", None, ""),
    ("lm.dataset_split", "", ""),
    ("lm.text_column", " ", ""),
    ("lm.max_documents", -1, ""),
    ("lm.ctx_len", 0, ""),
    ("lm.ctx_len", 1, ""),
    ("lm.max_chunks", -1, ""),
    ("lm.eval_chunks", -1, ""),
    ("lm.epochs", 0, ""),
    ("lm.lm_batch_size", 0, ""),
    ("lm.distributed_forward", "scattered", ""),
    ("lm.model_dtype", "int8", ""),
    ("lm.device", "tpu", ""),
    ("lm.exclude_special_tokens", "x", ""),
    ("lm.trust_remote_code", "x", ""),
    ("synthetic.d_in", 0, ""),
    ("synthetic.num_features", 0, ""),
    ("synthetic.num_features", 10, ""),  # fewer than the 16 groups x 3 group features
    ("synthetic.seed", -1, ""),
    ("synthetic.zipf_exponent", -1.0, ""),
    ("synthetic.max_firing_prob", 0.0, ""),
    ("synthetic.max_firing_prob", 1.5, ""),
    ("synthetic.min_firing_prob", 0.5, ""),  # above max_firing_prob
    ("synthetic.num_ambiguous_groups", -1, ""),
    ("synthetic.num_identifiable_groups", -1, ""),
    ("synthetic.group_rank", 0, ""),
    ("synthetic.group_rank", 100, ""),  # wider than d_in
    ("synthetic.group_firing_prob", 0.0, ""),
    ("synthetic.ambiguous_distribution", "cube", ""),
    ("synthetic.identifiable_signs", "negative", ""),
    ("synthetic.magnitude_mean", 0.0, ""),
    ("synthetic.magnitude_std", -1.0, ""),
    ("synthetic.feature_magnitude_std", -1.0, ""),
    ("synthetic.firing_correlation", 1.0, ""),
    ("synthetic.correlation_block_size", 0, ""),
    ("synthetic.noise_std", -1.0, ""),
    ("synthetic.feature_space_dim", -1, ""),
    ("synthetic.kind", "mixed", ""),
    ("synthetic.num_control_groups", -1, ""),
    ("synthetic.control_distribution", "sphere", ""),
    ("synthetic.composed_num_x", 0, ""),
    ("synthetic.composed_num_y", -2, ""),
    ("synthetic.composed_amplitude_correlation", 1.5, ""),
    ("synthetic.composed_amplitude_correlation", -0.1, ""),
]

UNCHECKED = {
    "data": set(),
    "train": set(),
    "saes": set(),
    "lm": set(),
    "synthetic": set(),
}
"""Fields with no invalid value (none today: even free-form strings must be strings)."""

SECTIONS = {"data": DataConfig, "train": TrainConfig, "saes": SaeConfig, "lm": LmConfig, "synthetic": SyntheticConfig}


def config_with(path: str, value: Any, arch: str) -> RunConfig:
    """A valid run config (npy, or the source that reads the section) with one field set to `value`."""
    section, name = path.split(".")
    source = SOURCE_OF.get(section, "npy")
    cfg = RunConfig(
        data=DataConfig(source=source, path="acts.npy"),
        saes=[SaeConfig(architecture=arch or "topk", num_latents=1024, k=16)],
    )
    cfg.validate()  # the base is valid: the error below comes from `value`
    target = cfg.saes[0] if section == "saes" else getattr(cfg, section)
    setattr(target, name, value)
    return cfg


@pytest.mark.parametrize(("path", "value", "arch"), CASES, ids=[f"{p}={v!r}" for p, v, _ in CASES])
def test_bad_value_is_one_line_naming_field_value_and_range(path: str, value: Any, arch: str) -> None:
    cfg = config_with(path, value, arch)
    section, name = path.split(".")
    field = f"saes[0].{name}" if section == "saes" else path
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    message = str(info.value)
    assert field in message, message
    items = value if isinstance(value, list) else []  # a bad list element is named as field[i]
    assert repr(value) in message or any(f"{name}[{i}] = {v!r}" in message for i, v in enumerate(items)), message
    assert "allowed" in message and "\n" not in message, message


def test_every_field_of_every_section_has_a_case() -> None:
    covered = {tuple(path.split(".")) for path, _, _ in CASES}
    for section, cls in SECTIONS.items():
        missing = {f.name for f in dataclasses.fields(cls)} - {n for s, n in covered if s == section} - UNCHECKED[section]
        assert not missing, f"{section}: no validation case for {sorted(missing)}"


def test_defaults_are_valid_for_every_source() -> None:
    for source in ("npy", "safetensors", "lm", "cache", "synthetic"):
        RunConfig(data=DataConfig(source=source, path="x")).validate()


def test_sections_a_source_does_not_use_are_not_checked() -> None:
    cfg = RunConfig(data=DataConfig(source="npy", path="acts.npy"))
    cfg.lm.ctx_len = 0
    cfg.synthetic.d_in = 0
    cfg.validate()
    cfg.data.source = "cache"
    with pytest.raises(ConfigError, match=r"lm\.ctx_len = 0"):
        cfg.validate()


def test_no_sae_and_clashing_names() -> None:
    with pytest.raises(ConfigError, match=r"saes = \[\] is empty"):
        RunConfig(data=DataConfig(source="synthetic"), saes=[]).validate()
    same = [SaeConfig(k=8), SaeConfig(k=16)]  # both 'topk-<8 d_in>'
    with pytest.raises(ConfigError, match=r"saes\[1\]\.name = '' gives the same directory as saes\[0\]"):
        RunConfig(data=DataConfig(source="synthetic"), saes=same).validate()
    named = [SaeConfig(k=8, name="a"), SaeConfig(architecture="relu", name="a")]
    with pytest.raises(ConfigError, match=r"saes\[1\]\.name = 'a' gives the same directory"):
        RunConfig(data=DataConfig(source="synthetic"), saes=named).validate()
    RunConfig(data=DataConfig(source="synthetic"), saes=[SaeConfig(k=8), SaeConfig(k=8, expansion_factor=4)]).validate()


def test_k_against_an_expansion_based_size_once_d_in_is_known(tmp_path: Path) -> None:
    sae = SaeConfig(k=100, expansion_factor=1)
    RunConfig(data=DataConfig(source="npy", path="acts.npy"), saes=[sae]).validate()  # d_in unknown yet
    expected = r"k = 100 is out of range; allowed: an integer in \[1, 64\] \(num_latents = expansion_factor 1 x d_in 64 = 64\)"
    with pytest.raises(ConfigError, match=r"saes\[0\]\." + expected):  # synthetic: d_in is in the config
        RunConfig(data=DataConfig(source="synthetic"), saes=[sae]).validate()
    with pytest.raises(ConfigError, match=expected):
        SparseAutoencoder(sae, 64)
    np.save(tmp_path / "acts.npy", np.random.default_rng(0).standard_normal((600, 64)).astype(np.float32))
    from saeseeds.data.sources import build_source

    cfg = RunConfig(data=DataConfig(source="npy", path=str(tmp_path / "acts.npy")), saes=[sae],
                    train=TrainConfig(seeds=[0], batch_size=100, num_tokens=300, progress=False))
    with pytest.raises(ConfigError, match=r"saes\[name=topk-64\]\." + expected):
        train_run(cfg, build_source(cfg), tmp_path / "run")
    SparseAutoencoder(dataclasses.replace(sae, k=64), 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["--train.lr", "-1"], r"train\.lr = -1\.0 is out of range"),
        (["--sae.num_latents", "-5"], r"saes\[0\]\.num_latents = -5"),
        (["--data.eval_fraction", "-0.5"], r"data\.eval_fraction = -0\.5"),
        (["--train.checkpoint_every", "-1"], r"train\.checkpoint_every = -1"),
        (["--saes.0.architecture", "gated"], r"saes\[0\]\.architecture = 'gated' is not registered"),
    ],
)
def test_load_config_validates_overrides(tmp_path: Path, overrides: list[str], match: str) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[data]\nsource = "npy"\npath = "acts.npy"\n\n[[sae]]\nk = 16\n')
    load_config(path)
    with pytest.raises(ConfigError, match=match):
        load_config(path, overrides)


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[data]\nsource = "synthetic"\n\n[train]\nlr = -0.001\n')
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "saeseeds train: error: train.lr = -0.001 is out of range; allowed: a finite number in [0, inf) " \
                  "(0 means 2e-4 / sqrt(num_latents / 2**14))"
    assert not (tmp_path / "run").exists()
