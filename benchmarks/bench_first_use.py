"""Benchmark: `saeseeds compare` of two random 4096-latent SAEs on first use (empty numba cache) and warm.

Each run is a fresh `saeseeds compare ... --quiet` process with `NUMBA_CACHE_DIR` pointing at one directory:
the first run compiles the alignment kernels into it, the later ones load them (numba's `cache=True`). With
`--read-only-package` the in-tree cache is bypassed as it would be in a read-only site-packages.

    .venv/bin/python benchmarks/bench_first_use.py --latents 4096 --d-in 4096 --runs 3
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def make_saes(root: Path, latents: int, d_in: int) -> list[Path]:
    """Two randomly initialised topk SAEs (different seeds) saved as saeseeds checkpoints."""
    from saeseeds.config import SaeConfig
    from saeseeds.sae import SparseAutoencoder
    from saeseeds.sae.checkpoint import save_sae

    paths = []
    for seed in (0, 1):
        sae = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=latents, k=32), d_in,
                                generator=torch.Generator().manual_seed(seed))
        paths.append(save_sae(sae, root / f"seed{seed}", seed=seed))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3, help="runs in all: the first is the cold one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = make_saes(root / "saes", args.latents, args.d_in)
        env = os.environ | {"NUMBA_CACHE_DIR": str(root / "numba-cache"), "HF_HUB_OFFLINE": "1"}
        exe = Path(sys.executable).with_name("saeseeds")
        for run in range(args.runs):
            start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([str(exe), "compare", str(a), str(b), "--out", str(root / f"out{run}"), "--quiet"],
                           env=env, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            label = "first use (empty cache)" if run == 0 else "warm"
            print(f"run {run + 1}: {label}: {time.perf_counter() - start:.1f} s wall, {cpu:.1f} s CPU "
                  f"(user + sys), load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
