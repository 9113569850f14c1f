"""TOML configs and CLI overrides map one to one onto the dataclasses, with errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from saeseeds.config import RunConfig, apply_overrides, from_dict, load_config, to_dict
from saeseeds.errors import ConfigError

TOML = """
[data]
source = "npy"
path = "acts.npy"

[train]
seeds = [0, 1, 2]
batch_size = 512
lr = 1e-3

[[sae]]
architecture = "topk"
k = 16
num_latents = 1024

[[sae]]
architecture = "relu"
l1_coefficient = 2.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_toml_maps_onto_the_dataclasses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, TOML))
    assert cfg.train.seeds == [0, 1, 2] and cfg.train.lr == 1e-3 and cfg.train.batch_size == 512
    assert [s.architecture for s in cfg.saes] == ["topk", "relu"]
    assert cfg.saes[0].k == 16 and cfg.saes[1].l1_coefficient == 2.5


def test_overrides_one_to_one(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, TOML), ["--train.lr", "5e-4", "--saes.1.l1_coefficient=1", "--sae.num_latents", "256",
                                              "--train.seeds", "3,4"])
    assert cfg.train.lr == 5e-4 and cfg.saes[1].l1_coefficient == 1.0
    assert [s.num_latents for s in cfg.saes] == [256, 256] and cfg.train.seeds == [3, 4]


def test_round_trip_through_a_dict() -> None:
    cfg = RunConfig()
    assert from_dict(RunConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "text,match",
    [
        ("[train]\nlearning_rate = 1\n", r"unknown field\(s\) learning_rate"),
        ("[train]\nbatch_size = 'big'\n", "train.batch_size: expected an integer"),
        ("[[sae]]\narchitecture = 'gated'\n", r"saes\[0\]\.architecture|saes.0.*architecture|'gated' is not one of"),
        ("[train]\nseeds = [1, 1]\n", "seeds must be distinct"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_bad_override_names_the_field() -> None:
    with pytest.raises(ConfigError, match="unknown field 'lrate'"):
        apply_overrides(RunConfig(), ["--train.lrate", "1"])
    with pytest.raises(ConfigError, match="needs a value"):
        apply_overrides(RunConfig(), ["--train.lr"])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
