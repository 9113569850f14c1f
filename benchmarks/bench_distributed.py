"""Scaling of lockstep training over torch.distributed ranks: seconds per step for 1 rank vs N ranks.

Each setting trains the same synthetic run twice, for `--steps` and `--steps * 3` steps, under
`torchrun --nproc-per-node R` (R = 1 too, so start-up costs are alike); the difference of the two wall times
divided by the difference of steps is the marginal time per step, free of start-up, data generation and the
final save. On a CPU box each rank gets `--threads` threads (default: cores / ranks), so R ranks use the same
cores as one. On a GPU machine pass `--device cuda` (one GPU per rank).

Usage:
    python benchmarks/bench_distributed.py --ranks 1 2 [--members 8 --latents 4096 --d-in 256]
Prints a table and writes benchmarks/out/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

JOB = textwrap.dedent(
    """
    import sys
    from saeseeds.config import RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.distributed import launched
    from saeseeds.training import train_run

    out, steps, seeds, latents, d_in, k, batch, device = sys.argv[1:9]
    cfg = RunConfig()
    cfg.data.source = "synthetic"
    cfg.synthetic.d_in = int(d_in)
    cfg.synthetic.num_features = 2 * int(d_in)
    cfg.saes = [SaeConfig(architecture="topk", num_latents=int(latents), k=int(k))]
    cfg.train = TrainConfig(seeds=list(range(int(seeds))), batch_size=int(batch),
                            num_tokens=int(batch) * int(steps), progress=False, device=device,
                            eval_tokens=int(batch), store_eval_tokens=0, checkpoint_every=10**9)
    with launched(device):
        train_run(cfg, build_source(cfg), out, overwrite=True)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wall(script: Path, ranks: int, threads: int, args: list[str]) -> float:
    """Seconds one torchrun launch of the job takes (exit 0 required)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}", "--nnodes=1",
           "--master-addr=127.0.0.1", f"--master-port={free_port()}", str(script), *args]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--members", type=int, default=8, help="seeds of one TopK configuration")
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="threads per rank (0: cores / ranks)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "out" / "distributed.json")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "job.py"
        script.write_text(JOB)
        for ranks in args.ranks:
            threads = args.threads or max(cores // ranks, 1)
            per_step = []
            for rep in range(args.reps):
                times = []
                for steps in (args.steps, 3 * args.steps):
                    job = [str(Path(tmp) / f"run{ranks}-{rep}-{steps}"), str(steps), str(args.members),
                           str(args.latents), str(args.d_in), str(args.k), str(args.batch), args.device]
                    times.append(wall(script, ranks, threads, job))
                per_step.append((times[1] - times[0]) / (2 * args.steps))
            best = min(per_step)
            rows.append({"ranks": ranks, "threads_per_rank": threads, "s_per_step": best,
                         "tokens_per_s": args.batch / best, "all_reps_s_per_step": per_step})
    base = rows[0]["s_per_step"]
    print(f"{args.members} TopK SAEs ({args.latents} latents, d_in {args.d_in}, k {args.k}), "
          f"batch {args.batch}, device {args.device}")
    print(f"{'ranks':>5} {'thr/rank':>8} {'s/step':>8} {'tokens/s':>10} {'speed-up':>8}")
    for row in rows:
        print(f"{row['ranks']:>5} {row['threads_per_rank']:>8} {row['s_per_step']:>8.3f} "
              f"{row['tokens_per_s']:>10.0f} {base / row['s_per_step']:>8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {"machine": platform.processor() or platform.machine(), "cores": cores,
              "date": time.strftime("%Y-%m-%d"), "args": {k: str(v) for k, v in vars(args).items()},
              "rows": rows}
    args.json.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
