"""`saeseeds compare A B [C ...] --out DIR`: align SAEs across seeds and store one cross-seed result per set.

Each argument is an SAE checkpoint directory (any format `saeseeds.load` reads) or a run directory; the
seeds of each SAE configuration of a run are compared among themselves, and the checkpoints named
directly form one more set. Writes DIR/summary.json, DIR/sets/<set>/ (format in docs/formats.md), figures.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from saeseeds.align.screen_choice import SCREEN_CHOICES
from saeseeds.commands._flags import (
    add_overwrite_flag,
    add_quiet_flag,
    add_rule_flags,
    rule_from_args,
)
from saeseeds.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `compare` verb."""
    p = subparsers.add_parser("compare", help="align SAEs across seeds: shared latents, stability, figures",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+",
                   help="SAE checkpoint directories, run directories, folders of seed<N> checkpoints (sparsify "
                        "--init_seeds), or hub names (OWNER/REPO/FOLDER, SAELens RELEASE/SAE_ID; docs/ecosystem.md)")
    p.add_argument("--names", default=None,
                   help="comma-separated names for the checkpoints given directly, in order (default: the "
                        "shortest distinct end of each path)")
    p.add_argument("--out", type=Path, required=True, help="output directory (new, empty, or an earlier compare)")
    add_rule_flags(p)
    add_overwrite_flag(p)
    p.add_argument("--device", default=None, help="auto / cpu / cuda / cuda:N (default auto)")
    p.add_argument("--screen", choices=SCREEN_CHOICES, default="auto",
                   help="GEMM that screens the pairs of large SAEs (the matching stays exact under each): auto "
                        "(default: int8 only where this CPU runs it faster than float32, timed once per machine "
                        "and cached), int8, bf16, fp32")
    p.add_argument("--activations", type=Path, default=None,
                   help=".npy / .safetensors held-out activations [tokens, d_in] for firing frequencies "
                        "(runs trained by saeseeds store their own)")
    p.add_argument("--max-tokens", type=int, default=262_144, help="held-out rows used for frequencies (> 0)")
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, call the API, print."""
    from saeseeds.outputs import check_output_dir

    rule = rule_from_args(args)  # flags and --out first: a bad one fails before the heavy imports
    if args.max_tokens <= 0:
        raise ConfigError(f"--max-tokens: {args.max_tokens} must be a positive number of rows")
    check_output_dir(args.out, "compare", overwrite=args.overwrite)

    from saeseeds.api.comparison import compare_all, print_comparison, save_comparison
    from saeseeds.api.discovery import seed_sets
    from saeseeds.device import resolve_device
    from saeseeds.distributed import launched

    device = str(resolve_device(args.device, field="--device"))
    names = None if args.names is None else [n.strip() for n in args.names.split(",")]
    sets = seed_sets(list(args.inputs), names=names)
    for s in sets:
        log.debug("set %s: %s", s.label, ", ".join(f"{n} = {p}" for n, p in zip(s.names, s.paths)))
    log.debug("device %s; output %s", device, args.out.absolute())
    with launched(device) as world:  # under torchrun: pairs spread over ranks, rank 0 writes the output
        if world.active and device.startswith("cuda"):
            device = f"cuda:{world.local_rank}"
        results = compare_all(sets, rule=rule, device=device, activations=args.activations,
                              max_tokens=args.max_tokens, progress=not args.quiet and world.is_main,
                              screen=args.screen)
        if not world.is_main:
            return 0
        path = save_comparison(results, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print_comparison(results)
        print(f"wrote {path}, cross-seed results in {args.out / 'sets'}, figures in {args.out / 'figures'}")
    return 0
