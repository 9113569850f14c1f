"""`saeseeds analyze RUN_DIR --out DIR`: why latents are unstable — triggers, ablation, subspaces; JSON + figures.

With `--compare DIR` (the output of `saeseeds compare` on this run) the stored cross-seed results are used
and nothing is aligned again; without it the run's seeds are aligned once here and the results are stored
under DIR/cross_seed/. Held-out data comes from the run directory (stored by the trainer).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saeseeds.commands._flags import (
    add_lm_model_flag,
    add_overwrite_flag,
    add_quiet_flag,
    add_rule_flags,
    rule_from_args,
)
from saeseeds.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `analyze` verb."""
    p = subparsers.add_parser(
        "analyze",
        help="stability vs frequency/triggers, ablation of stable/unstable latents, subspace reproducibility",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="run directory (holds run.json)")
    p.add_argument("--out", type=Path, required=True, help="output directory (new, empty, or an earlier analyze)")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="a `saeseeds compare` output for this run: reuse its alignments")
    p.add_argument("--config", action="append", default=[], metavar="NAME",
                   help="analyse only this SAE configuration name (repeatable; default all)")
    add_rule_flags(p, stability="reappears",
                   why="the claims are Gerasimov et al.'s, who define stability by decoder reappearance; the "
                       "other estimator is judged beside it unless --no-alternate")
    p.add_argument("--no-alternate", action="store_true",
                   help="judge the claims under the chosen --stability only (default: also under the other "
                        "estimator, on the same alignments and draws, saying where the answer changes)")
    add_overwrite_flag(p)
    p.add_argument("--n-random", type=int, default=200,
                   help="random control draws per seed and claim, for empirical p-values (≥ 1)")
    p.add_argument("--n-random-lm", type=int, default=99,
                   help="draws for the model-based ablation (LM loss / output recovered), at most --n-random (≥ 1); "
                        "99 lets its p reach 0.01 = α/5")
    p.add_argument("--freq-bins", type=int, default=10, help="frequency strata of the matched controls (≥ 1)")
    p.add_argument("--match", choices=("frequency", "frequency_mass", "none"), default="frequency",
                   help="how random controls are matched (none: unmatched, for comparison only)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level of the Holm-corrected verdicts")
    p.add_argument("--max-tokens", type=int, default=262_144,
                   help="tokens for firing/trigger/ablation statistics: held-out rows, then distinct stored "
                        "training rows, each once (0: held-out rows only; an LM run has none stored)")
    p.add_argument("--analysis-tokens", type=int, default=None, metavar="N",
                   help="LM runs: run the LM over the training chunks to reach N analysis tokens (replaces "
                        "--max-tokens; default: no LM forward, the held-out rows only)")
    p.add_argument("--n-top", type=int, default=10, help="top contexts kept per latent (≥ 1)")
    p.add_argument("--n-show", type=int, default=10, help="latents shown per group in contexts.html (≥ 0)")
    p.add_argument("--group-threshold", type=float, default=0.5,
                   help="|cos| joining unstable latents into groups, in (0, 1)")
    p.add_argument("--subspace-dim", type=int, default=0,
                   help="cap on compared subspace dimension (0: d_in/4; in the span verdict d_c/4, d_c the stable "
                        "span's complement)")
    p.add_argument("--max-eval-chunks", type=int, default=0, help="use at most this many held-out chunks (0: all)")
    p.add_argument("--lm-loss", action=argparse.BooleanOptionalAction, default=False,
                   help="run the model-based ablation (LM loss, or output recovered for an encoder): model passes "
                        "over the held-out chunks (default: off, so analyze runs no model forward)")
    p.add_argument("--lm-max-chunks", type=int, default=0,
                   help="held-out chunks for the model-based ablation, one model pass per set (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random controls")
    add_lm_model_flag(p)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """One line naming the flag for every out-of-range value."""
    checks = [
        ("--n-random", args.n_random >= 1, "≥ 1"),
        ("--n-random-lm", args.n_random_lm >= 1, "≥ 1"),
        ("--freq-bins", args.freq_bins >= 1, "≥ 1"),
        ("--alpha", 0 < args.alpha < 1, "in (0, 1)"),
        ("--max-tokens", args.max_tokens >= 0, "≥ 0 (0: held-out rows only)"),
        ("--analysis-tokens", args.analysis_tokens is None or args.analysis_tokens >= 1, "≥ 1"),
        ("--lm-max-chunks", args.lm_max_chunks >= 0, "≥ 0 (0: all)"),
        ("--n-top", args.n_top >= 1, "≥ 1"),
        ("--n-show", args.n_show >= 0, "≥ 0"),
        ("--group-threshold", 0 < args.group_threshold < 1, "in (0, 1)"),
        ("--subspace-dim", args.subspace_dim >= 0, "≥ 0 (0: d_in/4)"),
        ("--max-eval-chunks", args.max_eval_chunks >= 0, "≥ 0 (0: all)"),
    ]
    for flag, ok, allowed in checks:
        if not ok:
            value = getattr(args, flag[2:].replace("-", "_"))
            raise ConfigError(f"{flag}: {value} is out of range (allowed: {allowed})")


def run(args: argparse.Namespace) -> int:
    """Parse, call the API, print the verdicts (status lines go to the saeseeds logger)."""
    _check(args)  # flags first: a bad one fails before the heavy imports
    rule = rule_from_args(args)

    from saeseeds.analysis.instability import AnalyzeOptions
    from saeseeds.api.analysis import analyze

    opts = AnalyzeOptions(
        rule=rule, n_top=args.n_top, n_show=args.n_show, n_random=args.n_random, n_random_lm=args.n_random_lm,
        freq_bins=args.freq_bins, match=args.match, alpha=args.alpha,
        max_tokens=args.max_tokens if args.analysis_tokens is None else args.analysis_tokens,
        lm_train_rows=args.analysis_tokens is not None,
        group_threshold=args.group_threshold, subspace_dim=args.subspace_dim, lm_loss=args.lm_loss,
        lm_max_chunks=args.lm_max_chunks, alternate=not args.no_alternate,
        seed=args.seed, progress=not args.quiet,
    )
    from saeseeds.data.run_model import model_override

    with model_override(args.lm_model):  # --lm.model: every read of the run's config uses that model
        analyses = analyze(args.run_dir, cross=args.compare, options=opts, configs=args.config,  # status: logger
                           max_eval_chunks=args.max_eval_chunks, out=args.out, overwrite=args.overwrite)
    if not args.quiet:
        print_claims(analyses)
        if analyses:  # how many distinct rows, and whether the LM ran (or how to ask for it)
            from saeseeds.analysis.token_budget import describe

            print(describe(analyses[0].analysis_tokens))
        print(f"wrote {args.out / 'analysis.json'}")
    return 0


def print_claims(analyses: list) -> None:
    """The result on stdout: each configuration's verdicts (claims.json), one line each."""
    for res in analyses:
        print(f"{res.hookpoint}/{res.sae_name}:")
        for claim, verdict in res.claims.items():
            print(f"  {verdict.line(claim)}")
