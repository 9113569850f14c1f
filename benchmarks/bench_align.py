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


def run_case(
    n: int, d: int, dense: bool, device: str | None, screen: str | None, threads: int = 2,
    progress: bool = False,
) -> dict:
    """One case in this process: load the cached inputs (generating them first if needed), align (timed), optionally the dense scipy baseline."""
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
    t0 = time.perf_counter()
    result = align_weights(dec_a, enc_a, dec_b, enc_b, device=device, screen=screen, progress=progress)
    align_s = time.perf_counter() - t0
    row = {
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "num_latents": n, "d_in": d, "device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "threads": torch.get_num_threads(), "load_inputs_s": round(gen_s, 2),
        "align_s": round(align_s, 2), "peak_rss_gib": round(rss_gib(), 2),
        "input_rss_gib": round(base_rss, 2), "planted_shared": n_planted,
        "n_shared": int(result.n_shared), "shared_fraction": round(result.shared_fraction, 4),
        "mmcs": round(result.mmcs, 4), "dec_total": result.dec_total, "enc_total": result.enc_total,
        "dec_stats": result.stats.get("decoder", {}), "enc_stats": result.stats.get("encoder", {}),
    }
    if dense:
        from scipy.optimize import linear_sum_assignment

        t0 = time.perf_counter()
        an = dec_a.double() / dec_a.double().norm(dim=1, keepdim=True)
        bn = dec_b.double() / dec_b.double().norm(dim=1, keepdim=True)
        mat = (an.float() @ bn.float().t()).numpy()
        r, c = linear_sum_assignment(mat, maximize=True)
        dense_total = float((an[torch.as_tensor(r)] * bn[torch.as_tensor(c)]).sum(dim=1).sum())
        row["dense_decoder_s"] = round(time.perf_counter() - t0, 2)
        row["dense_decoder_total"] = dense_total
        row["dense_peak_rss_gib"] = round(rss_gib(), 2)
        row["total_matches_dense"] = abs(dense_total - result.dec_total) <= 1e-6 * n
    return row


def main() -> int:
    """Run each size in a subprocess, print a table, write benchmarks/out/bench_align.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32768:768,131072:4096", help="n:d pairs, comma separated")
    parser.add_argument("--dense", action="store_true", help="also run dense scipy (decoder) as baseline")
    parser.add_argument("--device", default=None)
    parser.add_argument("--screen", default=None, choices=["int8", "bf16", "fp32"])
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
        print(json.dumps(run_case(n, d, args.dense, args.device, args.screen, args.threads, args.progress)))
        return 0
    rows = []
    for size in args.sizes.split(","):
        cmd = [sys.executable, __file__, "--case", size]
        cmd += ["--dense"] if args.dense else []
        cmd += ["--device", args.device] if args.device else []
        cmd += ["--screen", args.screen] if args.screen else []
        cmd += ["--threads", str(args.threads)] + (["--progress"] if args.progress else [])
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if args.progress else subprocess.PIPE,
                              text=True, env=os.environ.copy())
        if proc.returncode != 0:
            print(proc.stderr or "", file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    header = f"{'latents':>8} {'d_in':>5} {'device':>6} {'align s':>8} {'peak GiB':>9} {'inputs GiB':>10} {'shared':>7} {'planted':>8} {'MMCS':>6} {'dense s':>8}"
    print(header)
    for r in rows:
        print(f"{r['num_latents']:>8} {r['d_in']:>5} {r['device']:>6} {r['align_s']:>8.2f} {r['peak_rss_gib']:>9.2f} "
              f"{r['input_rss_gib']:>10.2f} {r['n_shared']:>7} {r['planted_shared']:>8} {r['mmcs']:>6.3f} "
              f"{r.get('dense_decoder_s', float('nan')):>8.1f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_align.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
