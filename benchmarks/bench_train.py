"""Training step time per SAE: saeseeds' batched path, its per-member path, and (--against-sparsify) sparsify's step.

All in one process, on one device, on the same shapes and batches, interleaved (each repetition times every
implementation once, building it fresh and freeing it after), for S = 1, 4, 8, 16 seeds. Prints a table and
writes JSON (default benchmarks/out/bench_train.json). Shapes are (d_in, num_latents, k), TopK, batch `--batch-size`.

    python benchmarks/bench_train.py --preset cpu --against-sparsify            # scaled-down CPU shapes
    python benchmarks/bench_train.py --preset gpu --device cuda --dtype bfloat16 --against-sparsify

"ours" is `SeedStack` (train.batched_seeds = true): one batched GEMM, stacked top-k, sparse stacked decoder and
encoder backward, one fused Adam, statistics read once per timed block. "members" is today's `Member.step`
per seed (it reads its statistics every step). "sparsify" replays eai-sparsify's trainer step for S seeds
(`init_seeds`): per SAE decoder renormalisation, forward with total_variance, did_fire update and the float()
of its FVU, backward; then the gradient projection, one torch Adam over all SAEs, zero_grad, dead counters.
Neither side sees dead latents in these short runs (the dead threshold is `--dead-threshold` tokens), so AuxK
is skipped by both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.training.batched import SeedStack, keep_freed_memory
from saeseeds.training.member import Member

PRESETS = {
    "gpu": [(768, 32768, 32), (4096, 131072, 32), (4096, 131072, 192)],
    "cpu": [(128, 4096, 32), (256, 8192, 32), (256, 8192, 96)],
}
"""(d_in, num_latents, k): the issue's shapes, and scaled-down ones a 2-core CPU times in minutes."""

Step = Callable[[torch.Tensor, int], None]


def build_ours(seeds: int, shape: tuple[int, int, int], args: argparse.Namespace, batched: bool) -> Step:
    """A step of `seeds` saeseeds TopK SAEs, stacked (batched) or one `Member.step` after another."""
    d_in, latents, k = shape
    sae_cfg = SaeConfig(architecture="topk", num_latents=latents, k=k)
    train_cfg = TrainConfig(lr=2e-4, lr_warmup_steps=0, dtype=args.dtype, dead_tokens_threshold=args.dead_threshold,
                            batch_size=args.batch_size)
    device = torch.device(args.device)
    members = [Member.create("bench", sae_cfg, s, d_in, train_cfg, 10**9, device) for s in range(seeds)]
    if not batched:
        def step(x: torch.Tensor, t: int) -> None:
            for m in members:
                m.step(x, t)
        return step
    stack = SeedStack(members)

    def step_stack(x: torch.Tensor, t: int) -> None:
        stack.step(x, t, read=(t + 1) % args.read_every == 0)
    return step_stack


def build_sparsify(seeds: int, shape: tuple[int, int, int], args: argparse.Namespace) -> Step:
    """eai-sparsify 1.3.x's trainer step (loss_fn fvu, Adam fallback without bitsandbytes) for `seeds` SAEs."""
    from sparsify import SparseCoder, SparseCoderConfig

    d_in, latents, k = shape
    device = torch.device(args.device)
    saes = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        saes.append(SparseCoder(d_in, SparseCoderConfig(num_latents=latents, k=k), device, dtype=torch.float32))
    optimizer = torch.optim.Adam([{"params": sae.parameters(), "lr": 2e-4} for sae in saes])
    since_fired = [torch.zeros(latents, dtype=torch.long, device=device) for _ in saes]
    did_fire = [torch.zeros(latents, dtype=torch.bool, device=device) for _ in saes]

    def step(x: torch.Tensor, t: int) -> None:
        total_variance = (x - x.mean(0)).pow(2).sum()
        fvu = 0.0
        for sae, counts, fired in zip(saes, since_fired, did_fire, strict=True):
            sae.set_decoder_norm_to_unit_norm()
            dead_mask = counts > args.dead_threshold
            out = sae(x, dead_mask=dead_mask, total_variance=total_variance)
            fired[out.latent_indices.flatten()] = True
            fvu += float(out.fvu.detach())
            (out.fvu + out.auxk_loss + out.multi_topk_fvu / 8).backward()
        for sae in saes:
            sae.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            for counts, fired in zip(since_fired, did_fire, strict=True):
                counts += x.shape[0]
                counts[fired] = 0
                fired.zero_()
    return step


def check(args: argparse.Namespace) -> dict[str, object]:
    """Batched path against the per-member path on `--device`: max parameter difference per architecture."""
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(256, 64, generator=g).to(device) + 0.2 for _ in range(20)]
    out: dict[str, object] = {}
    for arch in ("topk", "batchtopk", "relu", "jumprelu"):
        sae_cfg = SaeConfig(architecture=arch, num_latents=1024, k=16)
        train_cfg = TrainConfig(lr=1e-3, lr_warmup_steps=5, dead_tokens_threshold=1024, dtype=args.dtype)
        ref, bat = ([Member.create("c", sae_cfg, s, 64, train_cfg, 20, device) for s in range(3)] for _ in range(2))
        stack = SeedStack(bat)
        for t, x in enumerate(batches):
            for m in ref:
                m.step(x, t)
            stack.step(x, t, read=False)
        diff = max(float((a - b).abs().max()) for m, n in zip(ref, bat, strict=True)
                   for a, b in zip(m.sae.state_dict().values(), n.sae.state_dict().values(), strict=True))
        out[arch] = {"max_abs_param_diff": diff, "steps": len(batches), "seeds": 3, "dtype": args.dtype}
        print(f"check {arch}: max |batched - per-member| parameter difference after 20 steps = {diff:.3g}")
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fits(seeds: int, shape: tuple[int, int, int], args: argparse.Namespace) -> bool:
    """Whether S SAEs (params, grads, 2 Adam moments, [S, B, n] pre-activations) fit in the device's free memory."""
    d_in, latents, _ = shape
    need = seeds * (2 * latents * d_in * 4 * 4 + args.batch_size * latents * 4 * 2) * 1.15
    if args.device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(args.device))
    else:
        import psutil

        free = psutil.virtual_memory().available
    return need < free


def time_impl(build: Callable[[], Step], batches: list[torch.Tensor], args: argparse.Namespace) -> float:
    """Seconds per step of a freshly built implementation (after `--warmup` untimed steps); frees it after."""
    device = torch.device(args.device)
    step = build()
    for t in range(args.warmup):
        step(batches[t % len(batches)], t)
    sync(device)
    start = time.perf_counter()
    for t in range(args.warmup, args.warmup + args.steps):
        step(batches[t % len(batches)], t)
    sync(device)
    elapsed = (time.perf_counter() - start) / args.steps
    del step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return elapsed


def measure(shape: tuple[int, int, int], seeds: int, args: argparse.Namespace) -> dict[str, object]:
    """Median seconds per step of each implementation over `--reps` interleaved repetitions."""
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(args.batch_size, shape[0], generator=g).to(device) for _ in range(4)]
    impls: dict[str, Callable[[], Step]] = {"ours": lambda: build_ours(seeds, shape, args, batched=True)}
    if not args.skip_members:
        impls["members"] = lambda: build_ours(seeds, shape, args, batched=False)
    if args.against_sparsify:
        impls["sparsify"] = lambda: build_sparsify(seeds, shape, args)
    times: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(args.reps):
        for name, build in impls.items():
            times[name].append(time_impl(build, batches, args))
    row: dict[str, object] = {"d_in": shape[0], "latents": shape[1], "k": shape[2], "seeds": seeds}
    for name, values in times.items():
        per_step = statistics.median(values)
        row[name] = {"s_per_step": per_step, "ms_per_step_per_sae": 1000 * per_step / seeds,
                     "tokens_per_s_per_sae": args.batch_size / per_step, "all_s_per_step": values}
    if "sparsify" in times:
        row["sparsify_over_ours"] = statistics.median(times["sparsify"]) / statistics.median(times["ours"])
    if "members" in times:
        row["members_over_ours"] = statistics.median(times["members"]) / statistics.median(times["ours"])
    return row


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def write_report(args: argparse.Namespace, device: torch.device, checked: object, rows: list) -> None:
    """The JSON report (machine, date, load, arguments, check, rows so far)."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine(device), "platform": platform.platform(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": list(os.getloadavg()),
        "args": {k: str(v) for k, v in vars(args).items()}, "check": checked, "results": rows,
    }
    try:
        from importlib.metadata import version

        report["sparsify"] = version("eai-sparsify")
    except Exception:  # noqa: BLE001 - only a label
        report["sparsify"] = "not installed"
    args.out.write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="shape set (default: gpu on cuda, cpu otherwise)")
    parser.add_argument("--shape", action="append", default=[], metavar="D:N:K",
                        help="a shape d_in:num_latents:k instead of the preset (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=None, help="tokens per step (cpu 256, cuda 8192)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repetition")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (median reported)")
    parser.add_argument("--read-every", type=int, default=1000, help="ours: steps between statistics reads")
    parser.add_argument("--dead-threshold", type=int, default=10_000_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="ours: autocast dtype on cuda (sparsify autocasts to bf16 on cuda itself)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--against-sparsify", action="store_true", help="also time eai-sparsify's step")
    parser.add_argument("--skip-members", action="store_true", help="do not time the per-member path")
    parser.add_argument("--check", action="store_true",
                        help="first compare the batched and per-member paths on the device (tiny shapes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "bench_train.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    args.keep_freed_memory = keep_freed_memory()  # as the trainer does on the CPU; the same for all three
    args.batch_size = args.batch_size or (8192 if device.type == "cuda" else 256)
    preset = args.preset or ("gpu" if device.type == "cuda" else "cpu")
    shapes = [tuple(int(v) for v in s.split(":")) for s in args.shape] or PRESETS[preset]
    checked = check(args) if args.check else None
    rows = []
    print(f"training step time on {machine(device)}, batch {args.batch_size}, dtype {args.dtype}, "
          f"median of {args.reps} interleaved reps x {args.steps} steps")
    print(f"{'d_in':>5} {'latents':>8} {'k':>4} {'S':>3} {'ours ms/SAE':>12} {'members':>9} {'sparsify':>9} "
          f"{'sparsify/ours':>14} {'members/ours':>13}")
    for shape in shapes:
        for seeds in args.seeds:
            if not fits(seeds, shape, args):
                print(f"{shape[0]:>5} {shape[1]:>8} {shape[2]:>4} {seeds:>3}  skipped: does not fit in free memory")
                rows.append({"d_in": shape[0], "latents": shape[1], "k": shape[2], "seeds": seeds, "skipped": "memory"})
                continue
            try:
                row = measure(shape, seeds, args)
            except torch.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
                print(f"{shape[0]:>5} {shape[1]:>8} {shape[2]:>4} {seeds:>3}  skipped: out of memory")
                rows.append({"d_in": shape[0], "latents": shape[1], "k": shape[2], "seeds": seeds, "skipped": "oom"})
                continue
            rows.append(row)

            def cell(name: str, row: dict = row) -> str:
                return f"{row[name]['ms_per_step_per_sae']:.1f}" if name in row else "-"

            ratio = f"{row['sparsify_over_ours']:.2f}x" if "sparsify_over_ours" in row else "-"
            members = f"{row['members_over_ours']:.2f}x" if "members_over_ours" in row else "-"
            print(f"{shape[0]:>5} {shape[1]:>8} {shape[2]:>4} {seeds:>3} {cell('ours'):>12} {cell('members'):>9} "
                  f"{cell('sparsify'):>9} {ratio:>14} {members:>13}", flush=True)
            write_report(args, device, checked, rows)  # after every row: a run cut short keeps what it measured
    write_report(args, device, checked, rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
