"""Reproducible findings: the study of docs/findings.md re-run on several seed sets and data orders and once more at
another thread count, with the machine recorded, and each study-level claim (a)-(d) tested over seeds and reruns.

Each rerun r is `saeseeds study CONFIG` with its own seeds (r·S … r·S + S − 1) and data order (data.shuffle_seed
= r); rerun 0 is run again at `--numeric-threads` threads (same seeds and data: numerical spread alone). The
claims are judged by `saeseeds.study.contrasts` (sign-flip tests over disjoint seed pairs of every rerun, every
step of a claim must hold, Holm over the claims); the spreads over seed pairs, over reruns and from the thread
count are reported side by side. Finished reruns are kept: running the script again into the same --out resumes.

Usage (from the repository root; `--quick` shrinks everything to check the script in a few minutes):
    python benchmarks/findings.py [--config configs/study.toml] [--out benchmarks/out/findings]
        [--reruns 4] [--seeds 4] [--threads 1] [--numeric-threads 2] [--jobs 2] [--alpha 0.05] [--quick]
Prints the markdown that docs/findings.md quotes and writes findings.md and findings.json into --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--train.num_tokens", "8192", "--train.batch_size", "256", "--train.eval_tokens", "1024",
         "--train.dead_tokens_threshold", "2048", "--lm.max_chunks", "96", "--lm.eval_chunks", "8",
         "--lm.epochs", "1", "--study.num_latents", "64,32,128", "--study.k", "4,2,8",
         "--study.milestones", "0.5,1.0"]
"""Overrides of `--quick`: a tiny grid of the same shape, to check the script end to end."""
LIBRARIES = ("torch", "numpy", "scipy", "numba", "transformers", "saeseeds")


def machine(threads: int, numeric_threads: int) -> dict[str, Any]:
    """Commit, CPU model, cores, thread counts and library versions: what the numbers depend on."""
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in run("lscpu").splitlines()
                if line.startswith("Model name")), platform.processor() or "unknown")
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"commit": run("git", "rev-parse", "HEAD") or None,
            "dirty": bool(run("git", "status", "--porcelain", "--", "src", "configs", "benchmarks")),
            "cpu": cpu, "cores": os.cpu_count(), "threads": threads, "numeric_threads": numeric_threads,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The studies to run: one per rerun (own seeds and data order), and rerun 0 at the other thread count."""
    extra = QUICK if args.quick else []
    runs = []
    for r in range(args.reruns):
        seeds = ",".join(str(r * args.seeds + i) for i in range(args.seeds))
        overrides = ["--data.shuffle_seed", str(r), "--study.seeds", seeds, "--train.progress", "false", *extra]
        runs.append({"name": f"rerun{r}", "threads": args.threads, "overrides": overrides, "rerun": True})
    if args.numeric_threads and args.numeric_threads != args.threads:
        runs.append({**runs[0], "name": f"rerun0-threads{args.numeric_threads}", "threads": args.numeric_threads,
                     "rerun": False})
    return runs


def run_study(config: Path, out: Path, run: dict[str, Any]) -> float | None:
    """One `saeseeds study` in a subprocess at its thread count; its wall seconds (None: kept, already complete)."""
    where = out / run["name"]
    if (where / "study.json").is_file():
        return None
    cmd = [sys.executable, "-m", "saeseeds", "study", str(config), "--out", str(where), "--quiet",
           "--threads", str(run["threads"]), *(["--resume"] if where.exists() else []), *run["overrides"]]
    env = dict(os.environ, OMP_NUM_THREADS=str(run["threads"]), MKL_NUM_THREADS=str(run["threads"]),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{run['name']}: `{shlex.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def read_run(out: Path, name: str) -> tuple[list[dict[str, Any]], dict, dict]:
    """A finished study's rows, its units' shared fractions and every ordered pair's, per (hookpoint, set, step)."""
    from saeseeds.api.comparison import load_comparison
    from saeseeds.study.contrasts import unit_values

    where = out / name
    record = json.loads((where / "study.json").read_text())
    units: dict = {}
    pairs: dict = {}
    for m in record["milestones"]:
        results = load_comparison(where / m["compare"])
        units.update(unit_values(name, results, int(m["step"])))
        for r in results:
            pairs[(r.hookpoint, r.sae_name, int(m["step"]))] = [al.shared_fraction for _, al in
                                                               sorted(r.alignments.items())]
    return record["rows"], units, pairs


def markdown(info: dict[str, Any]) -> str:
    """The tables docs/findings.md quotes."""
    m = info["machine"]
    v = m["versions"]
    lines = [
        "## Reproducible findings (`benchmarks/findings.py`)", "",
        f"**Machine.** {m['cpu']}, {m['cores']} cores; {m['threads']} thread(s) per study (numerical rerun: "
        f"{m['numeric_threads']}); commit {str(m['commit'])[:10]}{' (with local changes)' if m['dirty'] else ''}; "
        f"torch {v['torch']}, numpy {v['numpy']}, scipy {v['scipy']}, numba {v['numba']}, transformers "
        f"{v['transformers']}, Python {m['python']}; {m['date']}.", "",
        f"**Command.** `{info['command']}` (wall time {info['seconds'] / 60:.1f} min; per study: "
        + ", ".join(f"{r['name']} " + ("kept from an earlier invocation" if r["seconds"] is None
                                        else f"{r['seconds'] / 60:.1f} min") for r in info["runs"]) + ").", "",
        f"**Design.** {info['reruns']} reruns × {info['seeds']} seeds of `{info['config']}`, each rerun with its own "
        "seeds and data order; rerun 0 again at another thread count. Units of the tests: the disjoint seed pairs "
        f"of every rerun ({info['units']} units).", "",
        "### Shared fraction at the end of training: spread over seed pairs, reruns and thread counts", "",
        "| configuration | mean over reruns | pair sd (within a rerun) | rerun sd [range of rerun means] | "
        "thread count: Δ mean (mean abs Δ per pair) |",
        "|---|---|---|---|---|",
    ]
    final = max(r["step"] for r in info["spread"])
    for r in (r for r in info["spread"] if r["step"] == final):
        lo, hi = r["rerun_range"]
        thread = (f"{r['thread_delta']:+.1%} ({r['thread_pair_abs_delta']:.1%})" if "thread_delta" in r else "n/a")
        lines.append(f"| {r['set']} | {r['mean']:.1%} | {r['pair_sd']:.1%} | {r['rerun_sd']:.1%} "
                     f"[{lo:.1%}, {hi:.1%}] | {thread} |")
    lines += ["", "### Study-level claims, tested over seeds and reruns", "",
              "| claim | steps | smallest mean Δ (95% CI) | units with Δ > 0 | p (max over steps) | Holm p | verdict |",
              "|---|---|---|---|---|---|---|"]
    for c in info["claims"].values():
        state = {True: "holds", False: "does not hold", None: "undetermined"}[c["holds"]]
        e = c.get("effect")
        effect = (f"{e['mean']:+.2%} ({e['ci95'][0]:+.2%}, {e['ci95'][1]:+.2%}) at {e['step']}" if e else "–")
        positive = f"{e['positive']:.0%}" if e else "–"
        p = f"{c['p_value']:.3g}" if c.get("p_value") is not None else "–"
        holm = f"{c['p_holm']:.3g}" if c.get("p_holm") is not None else "–"
        verdict = state + (f" ({c['reason']})" if c.get("reason") else "")
        lines.append(f"| {c['claim']} | {len(c['steps'])} | {effect} | {positive} | {p} | {holm} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "study.toml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "findings")
    parser.add_argument("--reruns", type=int, default=4, help="seed sets × data orders (default 4)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per rerun (default 4: 2 disjoint pairs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per study (default 1)")
    parser.add_argument("--numeric-threads", type=int, default=2,
                        help="rerun 0 again at this thread count (0: no numerical rerun; default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="studies run at the same time (default 1)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true", help="a tiny grid of the same shape, 2 reruns")
    args = parser.parse_args()
    if args.quick and args.reruns == 4:
        args.reruns = 2
    if args.reruns < 1 or args.seeds < 2 or args.threads < 1 or args.jobs < 1 or not 0 < args.alpha < 1:
        parser.error("need --reruns ≥ 1, --seeds ≥ 2, --threads ≥ 1, --jobs ≥ 1 and --alpha in (0, 1)")
    from saeseeds.atomic import atomic_write_text
    from saeseeds.study.contrasts import claim_steps, disjoint_pairs, judge_claims, spread_rows

    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan(args)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        seconds = list(pool.map(lambda r: run_study(args.config, args.out, r), runs))
    data = {r["name"]: read_run(args.out, r["name"]) for r in runs}
    reruns = [r["name"] for r in runs if r["rerun"]]
    values: dict = {}
    for name in reruns:
        for key, units in data[name][1].items():
            values.setdefault(key, {}).update(units)
    numeric = (runs[0]["name"], runs[-1]["name"]) if not runs[-1]["rerun"] else None
    info: dict[str, Any] = {
        "machine": machine(args.threads, args.numeric_threads),
        "command": shlex.join(["python", "benchmarks/findings.py", *sys.argv[1:]]),
        "config": os.path.relpath(args.config, ROOT), "reruns": args.reruns, "seeds": args.seeds,
        "units": args.reruns * len(disjoint_pairs(args.seeds)), "quick": args.quick,
        "runs": [{"name": r["name"], "threads": r["threads"], "overrides": r["overrides"], "seconds": s}
                 for r, s in zip(runs, seconds)],
        "seconds": time.perf_counter() - started,
        "spread": spread_rows({n: d[2] for n, d in data.items()}, reruns=reruns, numeric=numeric),
        "claims": judge_claims(values, claim_steps(data[reruns[0]][0]), alpha=args.alpha),
    }
    text = markdown(info)
    atomic_write_text(args.out / "findings.md", text)
    atomic_write_text(args.out / "findings.json", json.dumps(info, indent=1, default=str) + "\n")
    print(text)
    print(f"wrote {args.out / 'findings.md'} and findings.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
