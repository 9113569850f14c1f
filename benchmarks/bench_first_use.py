"""Benchmark: `saeseeds compare` of two SAEs on first use (empty numba cache) and warm, as a user runs it.

Each run is a fresh `saeseeds compare A B --quiet` process with `NUMBA_CACHE_DIR` pointing at one directory
per case: the first ("cold") run starts from an empty cache, the next one ("warm") finds whatever the first
compiled, and a third ("cached") runs after a small sparse solve compiled the sparse kernels into that cache,
as an earlier large compare on the machine would have. Two kinds of SAE pair: `random` (two randomly initialised SAEs: no shared latents, the hardest
case for the Hungarian solver) and `planted` (bench_align.py's pair shaped like real SAEs: half of the latents
shared with seed noise, feature families, an anisotropic spectrum). The method (dense / sparse) is read back
from the cross-seed result. Prints a table and writes JSON.

    .venv/bin/python benchmarks/bench_first_use.py --shapes 4096:128 4096:768 4096:4096 32768:768
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_align import planted_pair  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def make_saes(root: Path, latents: int, d_in: int, kind: str) -> list[Path]:
    """Two TopK SAEs saved as saeseeds checkpoints: random initialisations, or a planted pair's weights."""
    from saeseeds.config import SaeConfig
    from saeseeds.sae import SparseAutoencoder
    from saeseeds.sae.checkpoint import save_sae

    planted = planted_pair(latents, d_in, seed=0)[:4] if kind == "planted" else None
    paths = []
    for seed in (0, 1):
        sae = SparseAutoencoder(SaeConfig(architecture="topk", num_latents=latents, k=32), d_in,
                                generator=torch.Generator().manual_seed(seed))
        if planted is not None:
            dec, enc = planted[2 * seed], planted[2 * seed + 1]
            with torch.no_grad():
                sae.W_dec.copy_(dec / dec.norm(dim=1, keepdim=True))
                sae.encoder.weight.copy_(enc)
        paths.append(save_sae(sae, root / f"seed{seed}", seed=seed))
    return paths


def run_compare(a: Path, b: Path, out: Path, cache: Path) -> dict[str, float | str]:
    """One `saeseeds compare` process: wall and CPU seconds, and the method its alignment used."""
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    exe = Path(sys.executable).with_name("saeseeds")
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(exe), "compare", str(a), str(b), "--out", str(out), "--quiet"], env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record = json.loads(next(out.glob("sets/*/cross_seed.json")).read_text())
    stats = record["pairs"][0]["stats"] if "pairs" in record else {}
    method = stats.get("decoder", {}).get("method", "?") if isinstance(stats, dict) else "?"
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "method": method,
            "load_avg": round(os.getloadavg()[0], 2)}


WARM_UP = ("import numpy as np; from saeseeds.align.assignment import max_cosine_assignment as m; "
           "r = np.random.default_rng(0); m(r.standard_normal((64, 8)), r.standard_normal((64, 8)), "
           "dense_max_pairs=0, with_row_max=True, with_col_max=True)")


def compile_kernels(cache: Path) -> None:
    """Compile the sparse path's kernels into `cache` (one small sparse solve), as an earlier large compare would."""
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", WARM_UP], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096:128", "4096:768", "4096:4096", "32768:768"],
                        help="LATENTS:D_IN pairs")
    parser.add_argument("--kinds", nargs="+", default=["random", "planted"], choices=["random", "planted"])
    parser.add_argument("--json", type=Path, default=OUT / "first_use.json")
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        latents, d_in = (int(x) for x in shape.split(":"))
        for kind in args.kinds:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                a, b = make_saes(root / "saes", latents, d_in, kind)
                cold = run_compare(a, b, root / "cold", root / "numba")
                warm = run_compare(a, b, root / "warm", root / "numba")
                compile_kernels(root / "numba")
                cached = run_compare(a, b, root / "cached", root / "numba")
            rows.append({"latents": latents, "d_in": d_in, "kind": kind, "cold": cold, "warm": warm,
                         "kernels_cached": cached})
            print(f"{latents:>7} {d_in:>5} {kind:<8}" + "".join(
                f"  {label} {r['wall_s']:>6.1f} s wall {r['cpu_s']:>6.1f} s CPU ({r['method']}, load {r['load_avg']})"
                for label, r in (("cold", cold), ("warm", warm), ("cached", cached))), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                     "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
