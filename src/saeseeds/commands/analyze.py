"""`saeseeds analyze RUN_DIR --out DIR`: why latents are unstable — triggers, ablation, subspaces; JSON + figures."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from saeseeds.errors import CheckpointError


def register(subparsers: Any) -> None:
    """Add the `analyze` verb."""
    p = subparsers.add_parser(
        "analyze",
        help="stability vs frequency/triggers, ablation of stable/unstable latents, subspace reproducibility",
        description=(
            "For every SAE configuration of a run (all seeds): per-latent stability, trigger statistics and "
            "top-activating contexts, ablation of stable / unstable / random latent sets (FVU and LM loss), "
            "and how reproducible the unstable latents' decoder spans are across seeds. Writes JSON tables, "
            "PNG figures and an HTML page of contexts under --out."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory (holds run.json)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default RUN_DIR/analysis)")
    p.add_argument("--config", action="append", default=[], metavar="NAME",
                   help="analyse only this SAE configuration name (repeatable; default all)")
    p.add_argument("--threshold", type=float, default=0.7, help="shared-latent cosine threshold τ")
    p.add_argument("--stable-cut", type=float, default=0.5, help="stable = shared in ≥ this fraction of other seeds")
    p.add_argument("--n-random", type=int, default=5, help="random control draws")
    p.add_argument("--n-top", type=int, default=10, help="top contexts kept per latent")
    p.add_argument("--n-show", type=int, default=10, help="latents shown per group in contexts.html")
    p.add_argument("--group-threshold", type=float, default=0.5, help="|cos| joining unstable latents into groups")
    p.add_argument("--subspace-dim", type=int, default=0, help="cap on compared subspace dimension (0: d_in/4)")
    p.add_argument("--max-eval-chunks", type=int, default=0, help="use at most this many held-out chunks (0: all)")
    p.add_argument("--no-lm-loss", action="store_true", help="skip the LM-loss ablation")
    p.add_argument("--seed", type=int, default=0, help="seed of the random controls")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Analyse the run and write the outputs; returns 0."""
    from saeseeds.analysis.eval_data import build_eval_data
    from saeseeds.analysis.instability import AnalyzeOptions, analyze_config
    from saeseeds.atomic import atomic_write_json
    from saeseeds.sae import load_sae
    from saeseeds.train.run_dir import group_by_config, list_checkpoints, load_run_config

    run_dir: Path = args.run_dir
    out: Path = args.out or run_dir / "analysis"
    cfg = load_run_config(run_dir)
    groups = group_by_config(list_checkpoints(run_dir))
    if args.config:
        groups = {k: v for k, v in groups.items() if k[1] in set(args.config)}
    if not groups:
        raise CheckpointError(f"{run_dir}: no SAE checkpoints to analyse" + (f" named {args.config}" if args.config else ""))
    opts = AnalyzeOptions(
        threshold=args.threshold, stable_cut=args.stable_cut, n_top=args.n_top, n_show=args.n_show,
        n_random=args.n_random, group_threshold=args.group_threshold, subspace_dim=args.subspace_dim,
        lm_loss=not args.no_lm_loss, seed=args.seed, progress=not args.quiet,
    )
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    t0 = time.perf_counter()
    data = build_eval_data(cfg, max_chunks=args.max_eval_chunks, progress=opts.progress)
    say(f"evaluation data: {len(data.batches)} batches, hookpoints {', '.join(data.hookpoints)} "
        f"({time.perf_counter() - t0:.1f}s)")
    summary: dict[str, Any] = {"run_dir": str(run_dir), "configs": {}}
    for (hookpoint, name), refs in groups.items():
        t1 = time.perf_counter()
        saes = [load_sae(r.path) for r in refs]
        hook_input = bool(getattr(cfg.lm, "hook_input", False)) and cfg.data.source == "lm"
        res = analyze_config(hookpoint, name, [r.seed for r in refs], saes, data, opts, hook_input=hook_input)
        target = out / _safe(hookpoint) / _safe(name)
        files = write_config_outputs(res, target, atomic_write_json)
        elapsed = time.perf_counter() - t1
        summary["configs"][f"{hookpoint}/{name}"] = {
            "dir": str(target), "seeds": res.seeds, "seconds": elapsed,
            "timings_s": res.tables["timings_s"], "files": files, "claims": res.tables["claims"],
        }
        say(f"{hookpoint}/{name}: {len(refs)} seeds analysed in {elapsed:.1f}s → {target}")
        for claim, verdict in res.tables["claims"].items():
            state = {True: "holds", False: "does not hold", None: "undetermined"}[verdict["holds"]]
            say(f"  {claim}: {state}")
    summary["seconds"] = time.perf_counter() - t0
    atomic_write_json(out / "analysis.json", _clean(summary))
    say(f"wrote {out / 'analysis.json'}")
    return 0


def write_config_outputs(res: Any, target: Path, write_json: Any) -> list[str]:
    """JSON tables, figures and the contexts page of one configuration; returns the file names."""
    import torch

    from saeseeds.report.analysis_plots import (
        plot_ablation,
        plot_group_ranks,
        plot_principal_angle_curves,
        plot_stability_vs_stat,
    )
    from saeseeds.report.contexts_html import LatentSection, write_contexts_page

    files = []
    for key in ("stability", "triggers", "ablation", "subspaces", "claims"):
        write_json(target / f"{key}.json", _clean(res.tables[key]))
        files.append(f"{key}.json")
    base = res.stability[0]
    latents = {"seed": res.seeds[0], "stability": base.stability.tolist(), **res.triggers[0].table()}
    write_json(target / "latents.json", _clean(latents))
    files.append("latents.json")
    stab = torch.cat([g.stability for g in res.stability])
    fired = torch.cat([t.fire_count for t in res.triggers]) > 0
    freq = torch.cat([t.frequency for t in res.triggers])
    plot_stability_vs_stat(stab[fired], freq[fired], target / "stability_vs_frequency.png",
                           ylabel="firing frequency", log=True)
    files.append("stability_vs_frequency.png")
    if "contexts" in res.tables:  # token statistics exist
        for stat, label in (("top_token_share", "top token share"), ("entropy", "trigger entropy (nats)")):
            vals = torch.cat([getattr(t, stat) for t in res.triggers])
            plot_stability_vs_stat(stab[fired], vals[fired], target / f"stability_vs_{stat}.png", ylabel=label)
            files.append(f"stability_vs_{stat}.png")
    rows = res.tables["ablation"]["rows"]
    for metric in ("fvu", "loss_recovered", "kl"):
        if metric in rows[0]["metrics"]:
            plot_ablation(rows, metric, target / f"ablation_{metric}.png")
            files.append(f"ablation_{metric}.png")
    sub = res.tables["subspaces"]
    if "overlaps" in sub:
        curves = {k: v["cos2_curve"] for k, v in sub["overlaps"].items()}
        plot_principal_angle_curves(curves, target / "principal_angles.png",
                                    analytic={"r/d": sub["expected_random_mean_cos2"]})
        files.append("principal_angles.png")
        grp = sub["groups"]["groups"]
        plot_group_ranks([g["size"] for g in grp], [g["rank90"] for g in grp], target / "group_ranks.png")
        files.append("group_ranks.png")
    if res.contexts:
        def section(latent: int) -> LatentSection:
            t = res.triggers[0]
            summary = (f"stability {float(base.stability[latent]):.2f} · frequency {float(t.frequency[latent]):.2e} · "
                       f"top-token share {float(t.top_token_share[latent]):.2f} · entropy {float(t.entropy[latent]):.2f}")
            return LatentSection(latent, summary, res.contexts.get(latent, []))

        ctx = res.tables["contexts"]
        write_contexts_page(
            target / "contexts.html", f"{res.hookpoint} / {res.sae_name} (seed {res.seeds[0]})",
            {"least stable": [section(i) for i in ctx["least_stable"]],
             "most stable": [section(i) for i in ctx["most_stable"]]},
        )
        files.append("contexts.html")
    return files


def _safe(name: str) -> str:
    """A path component from a hookpoint or SAE name."""
    return name.replace("/", "_").replace("\\", "_") or "_"


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return obj

