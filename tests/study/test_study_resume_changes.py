"""`study --resume` on a complete study refuses a changed config, naming the fields, as `train --resume` does
(defect D8 of the third reliability campaign): a changed base field (`--train.lr`) or a changed axis
(`--study.k`) would otherwise keep the old passes and comparisons under the new config's name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saeseeds.api.study import study
from saeseeds.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = """\
[data]
source = "npy"
path = "{path}"
[train]
seeds = [0, 1]
batch_size = 128
num_tokens = 512
lr_warmup_steps = 1
eval_tokens = 128
store_eval_tokens = 128
checkpoint_every = 1000
progress = false
device = "cpu"
[[sae]]
architecture = "topk"
num_latents = 16
k = 2
[study]
k = [2, 4]
"""


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A complete two-point study: its config and its directory."""
    root = tmp_path_factory.mktemp("study_resume")
    np.save(root / "acts.npy", np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32))
    config = root / "study.toml"
    config.write_text(CONFIG.format(path=root / "acts.npy"))
    study(config, root / "out")
    return config, root / "out"


def _files(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flags, named", [
    (["--train.lr", "0.01"], "train.lr: 0.0 -> 0.01"),
    (["--study.k", "2,16"], "study.k: [2, 4] -> [2, 16]"),
    (["--study.seeds", "0,1,2"], "study.seeds"),
])
def test_d8_study_resume_refuses_changed_config(done: tuple[Path, Path], flags: list[str], named: str) -> None:
    config, out = done
    before = _files(out)
    with pytest.raises(ConfigError, match="--resume: the config differs") as err:
        study(config, out, overrides=flags, resume=True)
    assert named in str(err.value)
    assert _files(out) == before  # refused before anything was trained, compared or written


def test_d8_study_resume_with_the_same_config_keeps_everything(done: tuple[Path, Path]) -> None:
    config, out = done
    result = study(config, out, overrides=["--train.progress", "false"], resume=True)  # an allowed change
    assert sorted({row["sae_name"] for row in result.rows}) == ["topk-n16-k2", "topk-n16-k4"]
