"""`torchrun ... -m saeseeds compare` spreads the pairs over ranks and stores what one process stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saeseeds.cli import main
from saeseeds.config import SaeConfig
from saeseeds.sae import SparseAutoencoder, save_sae


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Four seeds of one small TopK configuration (random weights are enough: alignment is deterministic)."""
    root = tmp_path_factory.mktemp("ckpts")
    paths = []
    for seed in range(4):
        sae = SparseAutoencoder(SaeConfig(num_latents=96 + 16 * (seed % 2), k=4), 24,
                                generator=torch.Generator().manual_seed(seed))
        path = root / f"seed{seed}"
        save_sae(sae, path, hookpoint="h", seed=seed)
        paths.append(path)
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 3])
def test_distributed_compare_equals_single_process(checkpoints, tmp_path, run_torchrun, nproc) -> None:
    single, spread = tmp_path / "single", tmp_path / "spread"
    assert main(["compare", *map(str, checkpoints), "--out", str(single), "--quiet"]) == 0
    proc = run_torchrun(["compare", *map(str, checkpoints), "--out", str(spread), "--quiet"], nproc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, many = json.loads((single / "summary.json").read_text()), json.loads((spread / "summary.json").read_text())
    assert one["pairs"] == many["pairs"]
    files = sorted(p.relative_to(single) for p in (single / "sets").rglob("*.npz"))
    assert files and files == sorted(p.relative_to(spread) for p in (spread / "sets").rglob("*.npz"))
    for rel in files:
        with np.load(single / rel) as a, np.load(spread / rel) as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{rel}:{key}")
