"""`saeseeds study CONFIG.toml --out DIR [--resume | --overwrite] [--study.k 8,16 ...]`: a sweep over sizes, k,
architectures, layers and training milestones, compared across seeds and aggregated into one table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from saeseeds.commands._flags import add_overwrite_flag, add_rule_flags, rule_from_args

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "study",
        help="train a grid of SAE configurations over seeds and milestones; table and figures of what is shared",
        description=(
            "Expand CONFIG's [study] axes (num_latents, k, architecture, hookpoints, milestones, seeds, match_l0) "
            "over its base config, train every grid point in lockstep on one activation stream, compare the "
            "seeds at every milestone once, and write study.json, table.csv, table.parquet and figures/ "
            "(docs/study.md). Overrides: --study.k 8,16 for the axes, --train.num_tokens 50000 for the base."
        ),
    )
    parser.add_argument("config", type=Path, help="TOML config with a [study] table")
    parser.add_argument("--out", type=Path, required=True, help="study directory to write")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted study in --out (finished passes and comparisons are kept)")
    parser.add_argument("--quick", action="store_true",
                        help="the smallest study that runs every stage: 3 seeds, 64 latents, k 4, 16 steps of at "
                             "most 128 tokens, ≤ 1,024 held-out tokens, one LM epoch (docs/cli.md)")
    add_rule_flags(parser)
    add_overwrite_flag(parser)
    parser.set_defaults(func=run, accepts_overrides=True)
    from saeseeds.config.help import format_config_help, section_help
    from saeseeds.config.study import StudyConfig

    parser.epilog = format_config_help(extra=[section_help("[study]", "study", StudyConfig)])


def run(args: argparse.Namespace) -> int:
    from saeseeds.config.study import load_study_config
    from saeseeds.outputs import check_creatable
    from saeseeds.study.grid import pass_configs

    rule = rule_from_args(args)
    study, base = load_study_config(args.config, list(args.overrides), quick=args.quick)  # fails before any work
    passes = pass_configs(study, base)
    check_creatable(args.out)
    log.debug("config %s, overrides %s: %d pass(es) of %s; data.source %s, train.device %s; out %s",
              args.config.absolute(), args.overrides or "none", len(passes),
              [[p.name for p in chunk] for _, chunk in passes], base.data.source, base.train.device,
              args.out.absolute())

    from saeseeds.api.study import run_study
    from saeseeds.distributed import launched

    with launched(base.train.device) as world:  # under torchrun: members and pairs spread over ranks
        result = run_study(args.config, args.out, overrides=list(args.overrides), rule=rule, resume=args.resume,
                           overwrite=args.overwrite, quick=args.quick)  # status lines: the saeseeds logger (--quiet: none)
    if not world.is_main:
        return 0
    from saeseeds.api.report import write_report
    from saeseeds.study.table import format_table

    if result.rows:
        print(format_table(result.rows))
    print(f"study: {result.out / 'study.json'}  table: {result.out / 'table.csv'}  figures: {result.out / 'figures'}")
    if result.record.get("recipes"):
        from saeseeds.study.table import format_recipes

        print(format_recipes(result.out / "recipes.json"))
    report = write_report(result.out)  # the HTML report of the study
    if report is not None:
        print(f"report: {report}")
    return 0
