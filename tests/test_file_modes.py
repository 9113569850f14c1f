"""Every file and directory the verbs write follows the umask (0644 / 0755 under umask 022), end to end."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from saeseeds.cli import main

CONFIG = """
[data]
source = "npy"
path = "{path}"

[train]
seeds = [0, 1]
batch_size = 256
num_tokens = 2560
eval_tokens = 512
checkpoint_every = 4
lr_warmup_steps = 2
progress = false
device = "cpu"

[[sae]]
architecture = "topk"
num_latents = 32
k = 4
"""


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Permission bits of everything under `root` (relative path -> mode)."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_train_compare_analyze_outputs_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "acts.npy"
    np.save(data, np.random.default_rng(0).standard_normal((4096, 16)).astype(np.float32))
    config = tmp_path / "run.toml"
    config.write_text(CONFIG.format(path=data))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0
    assert main(["compare", str(tmp_path / "run"), "--out", str(tmp_path / "cmp"), "--quiet"]) == 0
    assert main(["analyze", str(tmp_path / "run"), "--compare", str(tmp_path / "cmp"), "--out",
                 str(tmp_path / "an"), "--quiet", "--n-random", "2", "--no-lm-loss"]) == 0
    for out in ("run", "cmp", "an"):
        found = modes(tmp_path / out)
        assert len(found) > 5
        wrong = {p: oct(m) for p, m in found.items()
                 if m != (0o755 if (tmp_path / out / p).is_dir() else 0o644)}
        assert not wrong, f"{out}: {wrong}"
    assert (tmp_path / "run" / "run.json").stat().st_mode & 0o777 == 0o644
