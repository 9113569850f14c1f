"""Training throughput of the lockstep trainer: tokens/s per SAE for S = 1, 2, 4 seeds.

Default shape: d_in=768, 32,768 latents, k=32 (the docs/design.md anchor: sparsify 1.3.0 reaches 1.06M tokens/s
per SAE on an H100). Prints a table and writes JSON to benchmarks/out/bench_train.json.

    python benchmarks/bench_train.py                      # CPU, small batch
    python benchmarks/bench_train.py --device cuda --batch-size 8192 --steps 50
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.training.member import Member


def measure(seeds: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Time `args.steps` lockstep steps of `seeds` TopK SAEs on one shared batch stream."""
    sae_cfg = SaeConfig(architecture=args.architecture, num_latents=args.latents, k=args.k)
    train_cfg = TrainConfig(lr=2e-4, lr_warmup_steps=0, dtype=args.dtype)
    members = [
        Member.create("bench", sae_cfg, seed, args.d_in, train_cfg, args.steps + args.warmup, device)
        for seed in range(seeds)
    ]
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(args.batch_size, args.d_in, generator=g).to(device) for _ in range(4)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for step in range(args.warmup):
        for m in members:
            m.step(batches[step % 4], step)
    sync()
    start = time.perf_counter()
    for step in range(args.steps):
        x = batches[step % 4]
        for m in members:
            m.step(x, step)
    sync()
    elapsed = time.perf_counter() - start
    tokens = args.steps * args.batch_size
    return {
        "seeds": seeds,
        "seconds": elapsed,
        "tokens_per_s_per_sae": tokens / elapsed,
        "tokens_per_s_all_saes": tokens * seeds / elapsed,
        "ms_per_step_per_sae": 1000 * elapsed / (args.steps * seeds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--latents", type=int, default=32768)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--architecture", default="topk")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "bench_train.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(s, args, device) for s in args.seeds]
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"training throughput, {args.architecture} d_in={args.d_in} latents={args.latents} k={args.k} "
          f"batch={args.batch_size} on {machine}")
    print(f"{'seeds':>5} {'tokens/s per SAE':>17} {'tokens/s all SAEs':>18} {'ms/step/SAE':>12}")
    for r in rows:
        print(f"{r['seeds']:>5} {r['tokens_per_s_per_sae']:>17,.0f} {r['tokens_per_s_all_saes']:>18,.0f} "
              f"{r['ms_per_step_per_sae']:>12.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "platform": platform.platform(), "torch": torch.__version__,
              "args": {k: str(v) for k, v in vars(args).items()}, "results": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
