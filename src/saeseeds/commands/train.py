"""`saeseeds train CONFIG.toml --out RUN_DIR [--resume | --overwrite] [--section.field value ...]`."""

from __future__ import annotations

import argparse
import logging
import time
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
    from saeseeds.outputs import (
        check_creatable,
        check_train_out,
        removed_if_failed_fresh,
        run_worth_keeping,
    )

    cfg = load_config(args.config, args.overrides)  # before the heavy imports: a bad config fails fast
    check_creatable(args.out)
    log.debug("config %s, overrides %s: data.source %s, SAEs %s, seeds %s, %s tokens, train.device %s; out %s",
              args.config.absolute(), args.overrides or "none", cfg.data.source,
              [s.name or s.architecture for s in cfg.saes], cfg.train.seeds, f"{cfg.train.num_tokens:,}",
              cfg.train.device, args.out.absolute())

    from saeseeds.data.sources import build_source
    from saeseeds.distributed import launched
    from saeseeds.training import train_run
    from saeseeds.training.logging import check_sinks
    from saeseeds.training.trainer import check_out_dir

    check_train_out(args.out, cfg, args.config, overwrite=args.overwrite)  # recover; inputs never inside
    check_out_dir(args.out, resume=args.resume, overwrite=args.overwrite)  # before the LM runs
    check_sinks(cfg.train)  # train.tensorboard / train.wandb_project without their package
    with launched(cfg.train.device) as world:  # under torchrun: members spread over ranks (docs/distributed.md)
        started = time.perf_counter()
        pair = build_source(cfg)
        log.debug("activation source %s ready in %.1fs", cfg.data.source, time.perf_counter() - started)
        # bad data found before the first checkpoint: a fresh --out is removed again (docs/cli.md)
        with removed_if_failed_fresh(args.out, enabled=not args.resume and not world.active,
                                     keep=run_worth_keeping):
            result = train_run(cfg, pair, args.out, resume=args.resume, overwrite=args.overwrite)
    if not world.is_main:
        return 0
    print(f"trained {len(result.metrics) or 'all'} SAEs for {result.steps} steps ({result.tokens:,} tokens)")
    print(f"data fingerprint {result.fingerprint[:16]}…  run directory: {result.run_dir}")
    if result.metrics:
        print(f"{'SAE':<48} {'FVU':>8} {'L0':>8} {'dead':>7}")
        for key, m in sorted(result.metrics.items()):
            print(f"{key:<48} {m['fvu']:>8.4f} {m['l0']:>8.2f} {m['dead_fraction']:>7.1%}")
    return 0
