"""`saeseeds pool RUN_OR_COMPARE_DIR --out DIR`: pool cross-seed features into one SAE and judge it fairly.

Clusters the latents of one configuration's seeds (at most one per seed per cluster), builds the pooled SAE from
the clusters with most support, fits it on the run's stream, and compares it with single seeds on held-out rows,
by the stability of pooled SAEs from disjoint halves of the seeds, and with single seeds trained for the same
compute. Writes DIR/pool.json, the checkpoints and figures (docs/pooling.md, docs/formats.md).
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
    """Add the `pool` verb."""
    p = subparsers.add_parser("pool", help="pool cross-seed features into a more stable SAE and judge it",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", type=Path, help="a run directory, or a compare output of one")
    p.add_argument("--out", type=Path, required=True, help="output directory (new, empty, or an earlier pool)")
    p.add_argument("--config", default=None, help="the SAE configuration to pool when the run has several "
                   "(its name, e.g. topk-768, or <hookpoint>/<name>)")
    p.add_argument("--run", type=Path, default=None, help="the run directory, when a compare output's checkpoint "
                   "paths do not lead to it")
    p.add_argument("--edges", choices=("sharing", "decoder"), default="sharing",
                   help="cluster edges: shared latents under the rule (default) or decoder matches with cos ≥ τ")
    p.add_argument("--size", type=int, default=0, help="latents of the pooled SAE (default 0: one seed's size)")
    p.add_argument("--unique-cos", type=float, default=None,
                   help="keep a cluster only if its direction's cosine with every one kept before it is below "
                        "this, in (0, 1] (default: τ)")
    p.add_argument("--rank-by", choices=("delta_fvu", "mass"), default="delta_fvu",
                   help="after support, rank clusters by ΔFVU when ablated alone (default) or firing mass")
    p.add_argument("--fit", choices=("all", "encoder"), default="all",
                   help="what the fit updates: every parameter (default) or the encoder only")
    p.add_argument("--fit-tokens", type=int, default=-1,
                   help="tokens of the fit on the run's stream (default -1: a quarter of one seed's; 0: no fit)")
    p.add_argument("--select-tokens", type=int, default=32_768,
                   help="training rows on which each latent's contribution is measured (default 32768)")
    p.add_argument("--splits", type=int, default=3,
                   help="disjoint-halves splits of the seeds for the stability test (default 3; needs ≥ 4 seeds)")
    p.add_argument("--baseline-seeds", type=int, default=2,
                   help="fresh seeds trained for a pooled SAE's total compute (default 2; 0: no baseline)")
    p.add_argument("--ev-tolerance", type=float, default=0.01,
                   help="'equal explained variance': pooled ≥ the comparison's − this (default 0.01)")
    p.add_argument("--alpha", type=float, default=0.05, help="level of the sign-flip test over splits (default 0.05)")
    p.add_argument("--device", default="cpu", help="where the fits run: cpu (default), auto, cuda, cuda:N")
    add_lm_model_flag(p)
    add_quiet_flag(p)
    add_rule_flags(p)
    add_overwrite_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, call the API, print."""
    from saeseeds.outputs import check_output_dir
    from saeseeds.pooling.options import PoolOptions

    rule = rule_from_args(args)  # flags and --out first: a bad one fails before the heavy work
    try:
        options = PoolOptions(edges=args.edges, rule=rule, size=args.size, unique_cos=args.unique_cos, rank_by=args.rank_by, fit=args.fit,
                              fit_tokens=args.fit_tokens, select_tokens=args.select_tokens, splits=args.splits,
                              baseline_seeds=args.baseline_seeds, ev_tolerance=args.ev_tolerance,
                              alpha=args.alpha, device=args.device, progress=not args.quiet)
    except ConfigError as err:  # PoolOptions names its field ("fit_tokens: ..."): name the flag
        field, _, rest = str(err).partition(":")
        raise ConfigError(f"--{field.replace('_', '-')}:{rest}") from err
    check_output_dir(args.out, "pool", overwrite=args.overwrite)
    if not args.source.exists():
        raise ConfigError(f"{args.source} does not exist")


    from saeseeds.api.pooling import headline, pool
    from saeseeds.data.run_model import model_override

    with model_override(args.lm_model):  # --lm.model: every read of the run's config uses that model
        result = pool(args.source, out=args.out, options=options, config=args.config, run_dir=args.run,
                      overwrite=args.overwrite)  # status lines: the saeseeds logger
    if not args.quiet:
        print(headline(result.record))
        print(f"wrote {args.out / 'pool.json'}, the pooled SAE in {args.out / 'pooled'}, figures in "
              f"{args.out / 'figures'}")
    return 0 if result.out is not None else 1
