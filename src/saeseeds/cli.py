"""The `saeseeds` command: one sub-command per module of `saeseeds.commands`, discovered at start-up."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from saeseeds import commands
from saeseeds.errors import SaeseedsError
from saeseeds.startup import freeze_before_exit, import_frozen
from saeseeds.version import __version__

_OVERRIDE = re.compile(r"--[A-Za-z_][\w-]*(\.[\w-]+)+(=.*)?")
"""A config override `--section.field value` (or `--section.field=value`): the flag has a dot."""
_USAGE_PREFIX = re.compile(r"^\s*`saeseeds [^`]*`:\s*")
log = logging.getLogger("saeseeds.cli")
INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT): 128 + the signal's number, as shells report it."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps multi-line descriptions and epilogs as written, wraps one-line ones, and shows every option's
    default unless its help already states it (or it is an on/off switch)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or not action.option_strings
            or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        ):
            return action.help
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line on stderr (`--help` still shows the usage), with no
    prefix matching (`--no-progres` is an error, not `--no-progress`) and defaults shown in `--help`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        if kwargs.get("formatter_class") in (None, argparse.HelpFormatter, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = _HelpFormatter
        description = kwargs.get("description")
        if isinstance(description, str):  # a module docstring starting "`saeseeds verb ARGS`: what it does"
            description = _USAGE_PREFIX.sub("", description, count=1)
            kwargs["description"] = description[:1].upper() + description[1:]
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: object) -> str:
    """`message` as one line: a multi-line text (a library's message) is joined with ' | '."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " | ".join(lines)


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Take the `--section.field value` overrides out of `argv` before argparse sees it.

    Otherwise the value of an override could be taken for an optional positional argument
    (`saeseeds synthetic --out D --synthetic.group_rank 4` would read `4` as the config file).
    """
    rest: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        if _OVERRIDE.fullmatch(token):
            overrides.append(token)
            if "=" not in token and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append(argv[i + 1])
                i += 1
        else:
            rest.append(token)
        i += 1
    return rest, overrides


def build_parser() -> argparse.ArgumentParser:
    """Build the parser; every module in `saeseeds.commands` with a `register(subparsers)` adds one verb."""
    parser = _Parser(
        prog="saeseeds",
        description="Train SAEs over many seeds on the same activations and measure which features are real.",
    )
    parser.add_argument("--version", action="version", version=f"saeseeds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"saeseeds.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for verb in sub.choices.values():
        _complete_verb(verb)
    return parser


def _complete_verb(verb: argparse.ArgumentParser) -> None:
    """What every verb has: `--quiet` / `--verbose`, `--threads`, and for a verb that takes config overrides, every config
    field in `--help`."""
    from saeseeds.commands._flags import add_quiet_flag, add_threads_flag, has_flag

    if not has_flag(verb, "--quiet"):
        add_quiet_flag(verb)  # and --verbose
    if not has_flag(verb, "--threads"):
        add_threads_flag(verb)
    if verb.get_default("accepts_overrides") and not verb.epilog:
        from saeseeds.config.help import format_config_help

        verb.epilog = format_config_help()


def entry() -> NoReturn:
    """The console script (and `python -m saeseeds`): `main` in a fresh process, with the objects of its
    imports kept out of the garbage collector's walks (`saeseeds.startup`)."""
    try:
        status = main(fresh_process=True)
    except KeyboardInterrupt:  # Ctrl-C before a verb started (while its imports load)
        print("saeseeds: interrupted", file=sys.stderr)
        status = INTERRUPTED
    freeze_before_exit()
    sys.exit(status)


def main(argv: Sequence[str] | None = None, *, fresh_process: bool = False) -> int:
    """The command line `argv` (default `sys.argv[1:]`); returns the process exit status. `fresh_process`:
    this call owns the process (the console script), so torch is imported with its objects frozen."""
    parser = build_parser()
    rest, overrides = split_overrides(sys.argv[1:] if argv is None else list(argv))
    args, extra = parser.parse_known_args(rest)
    if overrides and args.command is not None and not getattr(args, "accepts_overrides", False):
        args, extra = parser.parse_known_args(rest + overrides)  # the verb's own dotted flags (--lm.model)
        overrides = []
    if args.command is None:
        parser.print_help()
        return 2
    extra = overrides + list(extra)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    quiet = bool(getattr(args, "quiet", False))
    if fresh_process:
        import_frozen("torch")  # every verb needs it; --help and --version, done above, do not
    from saeseeds.log import level_from_flags, log_written, say_with_first_status, setup_logging
    from saeseeds.threads import cpu_threads, resolve_threads

    setup_logging(level_from_flags(quiet, bool(getattr(args, "verbose", False))))
    started, clock = time.time(), time.perf_counter()
    log.debug("saeseeds %s, python %s: %s", __version__, sys.version.split()[0], " ".join(
        sys.argv[1:] if argv is None else list(argv)))
    try:
        threads, why = resolve_threads(args.threads)
        if why:
            say_with_first_status(f"threads: {threads} ({why}; --threads N to choose)")
        with cpu_threads(threads):
            log.debug("cpu threads: %s", threads or "the default, one per core")
            status = int(args.func(args) or 0)
        if isinstance(getattr(args, "out", None), Path):
            log_written(args.out, started)
        log.debug("%s done in %.1fs (exit status %d)", args.command, time.perf_counter() - clock, status)
        return status
    except KeyboardInterrupt as err:  # Ctrl-C: one line (train says the step and how to resume), no traceback
        print(f"saeseeds {args.command}: {one_line(err) or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    except SaeseedsError as err:
        message = str(err)
    except OSError as err:  # last resort: a file system refusal that no check caught (--out under a file, ...)
        where = f"{err.filename}: " if err.filename else ""
        message = f"{where}{err.strerror or err}"
    print(f"saeseeds {args.command}: error: {one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    entry()
