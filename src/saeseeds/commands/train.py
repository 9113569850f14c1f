"""`saeseeds train CONFIG.toml --out RUN_DIR [--resume | --overwrite] [--section.field value ...]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train SAEs over several seeds in lockstep on one activation stream",
        description=(
            "Train every [[sae]] configuration of CONFIG for every seed in train.seeds, all on the same "
            "batches. Any config field can be overridden: --train.lr 1e-3, --saes.0.k 16, --sae.k 16 (all)."
        ),
    )
    parser.add_argument("config", type=Path, help="TOML run config")
    parser.add_argument("--out", type=Path, required=True, help="run directory to write")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run in --out exactly (refused if the config changes how it trains)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace an earlier saeseeds run in --out, whole (a folder holding anything else is refused)",
    )
    parser.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from saeseeds.config import load_config

    cfg = load_config(args.config, args.overrides)  # before the heavy imports: a bad config fails fast
    log.debug("config %s, overrides %s: data.source %s, SAEs %s, seeds %s, %s tokens, train.device %s; out %s",
              args.config.absolute(), args.overrides or "none", cfg.data.source,
              [s.name or s.architecture for s in cfg.saes], cfg.train.seeds, f"{cfg.train.num_tokens:,}",
              cfg.train.device, args.out.absolute())

    from saeseeds.api.training import train
    from saeseeds.distributed import launched

    with launched(cfg.train.device) as world:  # under torchrun: the API trains in this process group
        result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, config_file=args.config)
    if not world.is_main:
        return 0
    print(f"trained {len(result.metrics) or 'all'} SAEs for {result.steps} steps ({result.tokens:,} tokens)")
    print(f"data fingerprint {result.fingerprint[:16]}…  run directory: {result.run_dir}")
    if result.metrics:
        print(f"{'SAE':<48} {'FVU':>8} {'L0':>8} {'dead':>7}")
        for key, m in sorted(result.metrics.items()):
            print(f"{key:<48} {m['fvu']:>8.4f} {m['l0']:>8.2f} {m['dead_fraction']:>7.1%}")
    from saeseeds.analysis.lm_loss import read_lm_loss, summary_lines

    lm_loss = read_lm_loss(result.run_dir) if cfg.train.lm_loss else None
    for line in summary_lines(lm_loss) if lm_loss else []:  # causal-LM runs (docs/definitions.md)
        print(line)
    return 0
