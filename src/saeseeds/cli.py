"""The `saeseeds` command: one sub-command per module of `saeseeds.commands`, discovered at start-up."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from saeseeds import __version__, commands
from saeseeds.errors import SaeseedsError


def build_parser() -> argparse.ArgumentParser:
    """Build the parser; every module in `saeseeds.commands` with a `register(subparsers)` adds one verb."""
    parser = argparse.ArgumentParser(
        prog="saeseeds",
        description="Train SAEs over many seeds on the same activations and measure which features are real.",
    )
    parser.add_argument("--version", action="version", version=f"saeseeds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"saeseeds.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = list(extra)
    try:
        return int(args.func(args) or 0)
    except (SaeseedsError, FileNotFoundError) as err:
        print(f"saeseeds {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
