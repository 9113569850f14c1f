"""Benchmark: exact cross-seed alignment of two SAEs (decoder + encoder matchings, MMCS), time and peak RSS.

Inputs are synthetic but shaped like real SAE pairs (see `planted_pair`): a planted fraction of
shared directions with seed noise, clustered "feature families" and an anisotropic spectrum, so that
unrelated latents have the broad cosine spread of real dictionaries rather than the near-orthogonality
of random unit vectors (which would make every row's best match obvious or, at d=4096, make all
cosines ~0 and the bounds meaningless). Inputs are generated once by a separate process and cached
under benchmarks/out/; each case loads them in a fresh subprocess, so its peak RSS is the inputs plus
the alignment, not the generator's temporaries.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_align.py            # 32768 x 768 and 131072 x 4096
    PYTHONPATH=src .venv/bin/python benchmarks/bench_align.py --sizes 32768:768 --dense
    # issue 25, in one run: the fp32 screen, the time of its own screening GEMMs, dense scipy on the same pair
    PYTHONPATH=src .venv/bin/python benchmarks/bench_align.py --sizes 32768:768 --screen fp32 --gemm --dense

Every row reports the screen used and why (`saeseeds.align.screen_choice`: auto's verdict, from the cache or
timed), and the int8/fp32 ratio of the probe products timed afresh in the case's process. `--gemm` times every
screening GEMM the alignment runs (`PairScorer.raw_rows` / `approx_rows`, wrapped), so the row gives the
alignment's overhead over its own GEMMs. `--dense` runs scipy's dense `linear_sum_assignment` on the float64
cosine matrices of the decoders and of the encoders (what the alignment computes, without MMCS's maxima, which
the dense matrices give for free) and checks both totals. `--repeat N` runs the alignment N times, each in a
fresh process, for the spread (the dense baseline runs once, with the first).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "out"


def planted_pair(
    n: int, d: int, *, shared: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(dec_a, enc_a, dec_b, enc_b, n_planted): two SAEs sharing `shared` of their latents.

    Features are drawn in families (a family centre plus per-feature variation, cosines ~0.3-0.5
    within a family) under a decaying per-dimension scale. Shared latents are the same feature in
    both SAEs, perturbed by independent seed noise (decoder cos ~0.89, encoder cos ~0.82); the rest
    are private features of each SAE; SAE b's latents are randomly permuted.
    """
    g = torch.Generator().manual_seed(seed)
    spectrum = (1.0 + torch.arange(d, dtype=torch.float32) / (d / 16)) ** -0.5
    n_shared = int(round(shared * n))
    n_families = max(1, n // 8)
    centres = torch.randn(n_families, d, generator=g)

    def features(count: int) -> torch.Tensor:
        fam = torch.randint(0, n_families, (count,), generator=g)
        out = torch.randn(count, d, generator=g).mul_(1.2).add_(centres[fam]).mul_(spectrum)
        return out.div_(out.norm(dim=1, keepdim=True))

    common = features(n_shared)

    def sae(private: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dec = torch.cat([common, private])
        dec = dec + torch.randn(dec.shape, generator=g).mul_(0.35 / d**0.5)
        dec.div_(dec.norm(dim=1, keepdim=True))
        # encoder = decoder + its own noise: planted latents keep encoder cosines ~0.8 (> 0.7)
        enc = dec + torch.randn(dec.shape, generator=g).mul_(0.3 / d**0.5)
        return dec, enc

    dec_a, enc_a = sae(features(n - n_shared))
    dec_b, enc_b = sae(features(n - n_shared))
    perm = torch.randperm(n, generator=g)
    return dec_a, enc_a, dec_b[perm].contiguous(), enc_b[perm].contiguous(), n_shared


def rss_gib() -> float:
    """Peak resident set size of this process so far, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed_gemms(counter: dict[str, float]) -> None:
    """Wrap the screening GEMMs of `PairScorer` (raw blocks on the CPU, approximate blocks elsewhere) to add
    their wall time and multiply-adds to `counter`."""
    from saeseeds.align.similarity import PairScorer

    for name in ("raw_rows", "approx_rows"):
        original = getattr(PairScorer, name)

        def wrapped(self, rows, cols=None, _original=original):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = _original(self, rows, cols)
            counter["seconds"] += time.perf_counter() - t0
            counter["gmacs"] += out.shape[0] * out.shape[1] * self.d / 1e9
            counter["calls"] += 1
            return out

        setattr(PairScorer, name, wrapped)


def probe_ratio() -> dict:
    """auto's verdict for this machine (cached or timed) and the probe products timed afresh here."""
    from saeseeds.align import screen_choice

    cpu = torch.device("cpu")
    fresh = screen_choice.measure_products(cpu)
    auto = screen_choice.resolve_screen("auto", cpu)
    ratio = None if fresh["int8"] is None else round(fresh["int8"] / fresh["fp32"], 2)
    return {"auto": auto.as_dict(), "probe_int8_s": fresh["int8"], "probe_fp32_s": fresh["fp32"],
            "probe_int8_over_fp32": ratio}


def dense_baseline(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """scipy's dense optimum of each (a, b) on its float64 cosine matrix: seconds and totals."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    out: dict = {"dense_s": [], "dense_total": []}
    for a, b in pairs:
        t0 = time.perf_counter()
        an = a.double() / a.double().norm(dim=1, keepdim=True)
        bn = b.double() / b.double().norm(dim=1, keepdim=True)
        mat = (an @ bn.t()).numpy()
        del an, bn
        np.negative(mat, out=mat)  # minimise -C in place: maximize=True would copy the 8.6 GB matrix at 32K
        r, c = linear_sum_assignment(mat)
        out["dense_total"].append(-float(mat[r, c].sum()))
        del mat
        out["dense_s"].append(round(time.perf_counter() - t0, 2))
        out["dense_peak_rss_gib"] = round(rss_gib(), 2)
    return out


def run_case(
    n: int, d: int, dense: bool, device: str | None, screen: str | None, threads: int = 2,
    progress: bool = False, gemm: bool = False,
) -> dict:
    """One case in this process: load the cached inputs (generating them first if needed), align (timed), optionally
    the dense scipy baseline."""
    from saeseeds.align import align_weights

    cache = OUT / f"inputs_{n}x{d}.pt"
    if not cache.exists():  # generated in a separate process: its temporaries would inflate peak RSS
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--generate", f"{n}:{d}"], check=True)
        print(f"generated {n}x{d} inputs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    t0 = time.perf_counter()
    dec_a, enc_a, dec_b, enc_b, n_planted = torch.load(cache, mmap=False)
    gen_s = time.perf_counter() - t0
    base_rss = rss_gib()
    torch.set_num_threads(threads)
    probe = probe_ratio()
    counter = {"seconds": 0.0, "gmacs": 0.0, "calls": 0}
    if gemm:
        timed_gemms(counter)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = align_weights(dec_a, enc_a, dec_b, enc_b, device=device, screen=screen, progress=progress)
    align_s = time.perf_counter() - t0
    dec_stats, enc_stats = result.stats.get("decoder", {}), result.stats.get("encoder", {})
    row = {
        "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "num_latents": n, "d_in": d, "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "threads": torch.get_num_threads(), "load_inputs_s": round(gen_s, 2),
        "screen": dec_stats.get("screen") or "dense", "screen_choice": dec_stats.get("screen_choice", {}), **probe,
        "align_s": round(align_s, 2), "peak_rss_gib": round(rss_gib(), 2),
        "input_rss_gib": round(base_rss, 2), "planted_shared": n_planted,
        "n_shared": int(result.n_shared), "shared_fraction": round(result.shared_fraction, 4),
        "mmcs": round(result.mmcs, 4), "dec_total": result.dec_total, "enc_total": result.enc_total,
        "dec_stats": dec_stats, "enc_stats": enc_stats,
    }
    if gemm:
        row["gemm_s"] = round(counter["seconds"], 2)
        row["gemm_calls"] = counter["calls"]
        row["gemm_gflops"] = round(2 * counter["gmacs"] / max(counter["seconds"], 1e-9), 1)
        if counter["seconds"] > 0:  # no GEMM when both matchings were solved densely
            row["align_over_gemm"] = round(align_s / counter["seconds"], 2)
    if dense:
        row.update(dense_baseline([(dec_a, dec_b), (enc_a, enc_b)]))
        row["dense_total_s"] = round(sum(row["dense_s"]), 2)
        row["dense_over_align"] = round(row["dense_total_s"] / align_s, 2)
        row["total_matches_dense"] = all(
            abs(x - y) <= 1e-9 * n for x, y in zip(row["dense_total"], (result.dec_total, result.enc_total)))
    return row


def main() -> int:
    """Run each size in a subprocess, print a table, write benchmarks/out/bench_align.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32768:768,131072:4096", help="n:d pairs, comma separated")
    parser.add_argument("--dense", action="store_true",
                        help="also run dense scipy (decoder and encoder matchings) as baseline, once")
    parser.add_argument("--device", default=None)
    parser.add_argument("--screen", default="auto", choices=["auto", "int8", "bf16", "fp32"])
    parser.add_argument("--gemm", action="store_true", help="time the alignment's own screening GEMMs")
    parser.add_argument("--repeat", type=int, default=1, help="alignments per size, each in a fresh process")
    parser.add_argument("--out", type=Path, default=OUT / "bench_align.json", help="JSON of every row")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the timed part")
    parser.add_argument("--progress", action="store_true", help="progress bars (stage timings) on stderr")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        n, d = (int(x) for x in args.generate.split(":"))
        OUT.mkdir(exist_ok=True)
        tmp = OUT / f"inputs_{n}x{d}.pt.tmp"
        torch.save(planted_pair(n, d), tmp)
        tmp.replace(OUT / f"inputs_{n}x{d}.pt")
        return 0
    if args.case:
        n, d = (int(x) for x in args.case.split(":"))
        print(json.dumps(run_case(n, d, args.dense, args.device, args.screen, args.threads, args.progress,
                                  args.gemm)))
        return 0
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        for rep in range(args.repeat):
            cmd = [sys.executable, __file__, "--case", size, "--screen", args.screen]
            cmd += ["--dense"] if args.dense and rep == 0 else []
            cmd += ["--gemm"] if args.gemm else []
            cmd += ["--device", args.device] if args.device else []
            cmd += ["--threads", str(args.threads)] + (["--progress"] if args.progress else [])
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.progress else subprocess.PIPE,
                                  text=True, env=os.environ.copy())
            if proc.returncode != 0:
                print(proc.stderr or "", file=sys.stderr)
                return proc.returncode
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print_row(rows[-1], header=len(rows) == 1)
            args.out.write_text(json.dumps(rows, indent=2))  # after every row: a long run keeps what it measured
    return 0


def print_row(r: dict, header: bool) -> None:
    """One line per case: time, memory, screen and why, GEMM share, dense baseline."""
    if header:
        print(f"{'latents':>8} {'d_in':>5} {'device':>6} {'screen':>6} {'int8/fp32':>9} {'align s':>8} "
              f"{'gemm s':>7} {'al/gemm':>7} {'peak GiB':>9} {'shared':>7} {'planted':>8} {'MMCS':>6} "
              f"{'dense s':>8} {'dense/al':>8} {'load':>10}")
    nan = float("nan")
    ratio = r.get("probe_int8_over_fp32")
    print(f"{r['num_latents']:>8} {r['d_in']:>5} {r['device']:>6} {r['screen']:>6} "
          f"{ratio if ratio is not None else nan:>9.1f} {r['align_s']:>8.2f} {r.get('gemm_s', nan):>7.2f} "
          f"{r.get('align_over_gemm', nan):>7.2f} {r['peak_rss_gib']:>9.2f} {r['n_shared']:>7} "
          f"{r['planted_shared']:>8} {r['mmcs']:>6.3f} {r.get('dense_total_s', nan):>8.1f} "
          f"{r.get('dense_over_align', nan):>8.2f} {'/'.join(map(str, r['load_avg_1min'])):>10}", flush=True)
    choice = r.get("screen_choice") or {}
    if choice:
        print(f"    screen {choice.get('screen')} ({choice.get('requested')}, {choice.get('source')}): "
              f"{choice.get('reason')}; auto here: {r['auto']['screen']} ({r['auto']['reason']})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
