"""Wall time of the stages after training (compare, then analyze) for two code versions, interleaved.

Measures what the cross-seed-result redesign changed: before it, `analyze` re-ran the language model and
re-aligned every pair `compare` had aligned; after it, `analyze --compare DIR` aligns nothing and reads the
held-out set the trainer stored. Each version runs on its own demo run directory (same config, same numbers).

Usage (old code checked out with `git worktree add /tmp/base fb7f649`, each demo run made by its version):
    python benchmarks/bench_post_training.py --old-src /tmp/base/src --old-run /tmp/base_demo/run \
        --new-src src --new-run runs/demo/run [--reps 2]
Prints a table and writes benchmarks/out/post_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(src: str, args: list[str]) -> float:
    """Seconds one `python -m saeseeds.cli ...` run takes with `src` first on the path (exit 0 required)."""
    env = dict(os.environ, PYTHONPATH=src, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "saeseeds.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old-src", required=True)
    parser.add_argument("--old-run", required=True)
    parser.add_argument("--new-src", required=True)
    parser.add_argument("--new-run", required=True)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in ("old compare", "old analyze", "new compare", "new analyze")}
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            times["old compare"].append(timed(args.old_src, ["compare", args.old_run, "--out", str(t / "oc")]))
            times["old analyze"].append(timed(args.old_src, ["analyze", args.old_run, "--out", str(t / "oa"),
                                                             "--quiet"]))
            times["new compare"].append(timed(args.new_src, ["compare", args.new_run, "--out", str(t / "nc"),
                                                             "--quiet"]))
            times["new analyze"].append(timed(args.new_src, ["analyze", args.new_run, "--compare", str(t / "nc"),
                                                             "--out", str(t / "na"), "--quiet"]))
    print(f"{'stage':<14} {'median s':>9} {'runs'}")
    for key, values in times.items():
        print(f"{key:<14} {statistics.median(values):>9.1f} {', '.join(f'{v:.1f}' for v in values)}")
    out = Path(__file__).parent / "out" / "post_training.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "seconds": times}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
