"""Flags shared by several verbs, defined once: the sharing rule, --overwrite, --quiet / --verbose."""

from __future__ import annotations

import argparse

from saeseeds.align.sharing import CUT_KINDS, STABILITY_KINDS, SharingRule
from saeseeds.errors import ConfigError

_DEFAULT = SharingRule()


def add_rule_flags(parser: argparse.ArgumentParser, *, stability: str = _DEFAULT.stability, why: str = "") -> None:
    """--threshold, --absolute, --stability, --cut, --epsilon, with SharingRule's defaults (a verb may default
    --stability otherwise: `analyze` tests Gerasimov et al.'s claims with their estimator, saying `why`)."""
    group = parser.add_argument_group("sharing rule (docs/definitions.md)")
    group.add_argument("--threshold", type=float, default=_DEFAULT.threshold,
                       help=f"cosine τ a shared latent must exceed, in [0, 1) (default {_DEFAULT.threshold})")
    group.add_argument("--absolute", action="store_true", help="use |cosine| (a flipped latent counts as the same)")
    group.add_argument("--stability", choices=STABILITY_KINDS, default=stability,
                       help=f"per-latent stability: shared (P&B) or reappears (decoder max-cosine ≥ τ); default "
                            f"{stability}{': ' + why if why else ''}")
    group.add_argument("--cut", choices=CUT_KINDS, default=_DEFAULT.cut,
                       help="stable/unstable split: half (≥ 1/2 / none, default) or endpoints (≥ 1-ε / ≤ ε)")
    group.add_argument("--epsilon", type=float, default=_DEFAULT.epsilon,
                       help=f"ε of the endpoints cut, in [0, 0.5) (default {_DEFAULT.epsilon})")


def rule_from_args(args: argparse.Namespace) -> SharingRule:
    """The SharingRule the flags describe (ConfigError naming the flag when out of range)."""
    try:
        return SharingRule(threshold=args.threshold, absolute=args.absolute, stability=args.stability,
                           cut=args.cut, epsilon=args.epsilon)
    except ConfigError as err:  # SharingRule names its field ("threshold: 5.0 is outside ..."): name the flag
        raise ConfigError(f"--{err}") from err


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """--overwrite: replace this verb's own earlier output in --out, whole."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace this verb's earlier output in --out (never another verb's or foreign files)")


def add_quiet_flag(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """--quiet and --verbose, mutually exclusive (both: one usage line, exit 2); the CLI sets up logging from
    them for every verb (`saeseeds.log.setup_logging`, docs/cli.md).

    --quiet (and old spellings in `aliases`, e.g. '--no-progress'): no progress bars, status lines or library
    loading messages; warnings, errors and results still print. --verbose: also the DEBUG details."""
    group = parser.add_mutually_exclusive_group()
    short = [] if has_flag(parser, "-q") else ["-q"]  # a verb's own -q keeps its meaning
    group.add_argument("--quiet", *short, *aliases, dest="quiet", action="store_true",
                       help="print only results, warnings and errors: no progress bars or status lines, no "
                            "library loading messages" + (f" (old spelling: {', '.join(aliases)})" if aliases else ""))
    short = [] if has_flag(parser, "-v") else ["-v"]
    group.add_argument("--verbose", *short, dest="verbose", action="store_true",
                       help="also print details on stderr: resolved config, paths and device, per-pair alignment "
                            "stats, timings, files written, library info messages")


def add_threads_flag(parser: argparse.ArgumentParser, default: int | str = 0, why: str = "") -> None:
    """--threads N|auto: CPU threads for torch and numba during this verb (the CLI applies it, `cli.cpu_threads`);
    0 keeps the libraries' default, one per core; auto leaves the cores other jobs keep busy. `why` explains a
    verb's own default."""
    parser.add_argument(
        "--threads", default=default, metavar="N|auto",
        help=f"CPU threads for torch and numba (default {default}{': ' + why if why else ''}; 0: one per core; "
             "auto: the cores other jobs leave free, by the 1-minute load). "
             "On a machine shared with other jobs fewer threads avoid threads waiting on each other")


def has_flag(parser: argparse.ArgumentParser, flag: str) -> bool:
    """True when `parser` already defines option `flag`."""
    return flag in parser._option_string_actions


def add_lm_model_flag(parser: argparse.ArgumentParser) -> None:
    """`--lm.model PATH`: read the run's language model from PATH (a moved model), checked against run.json."""
    parser.add_argument("--lm.model", dest="lm_model", default=None, metavar="PATH",
                        help="the run's language model from this local directory instead of the one run.json "
                             "records (it must have the recorded architecture and shape)")
