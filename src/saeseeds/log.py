"""The one logging setup of saeseeds: what a command says about its work goes through the `saeseeds` loggers.

Why: output used to be `print` calls and tqdm bars scattered over the verbs, so each verb had its own quiet
switch (or none) and status text mixed with results. Now every module logs to `logging.getLogger(__name__)`
(the `saeseeds.*` hierarchy) and the CLI calls `setup_logging` once, from the common flags:

    default     INFO: the status lines of today's normal output
    --quiet     WARNING: warnings and errors only; also `progress.set_quiet` (no bars, no library messages)
    --verbose   DEBUG: also resolved config/paths/device, per-pair alignment stats, timings, files written;
                and the Hugging Face libraries' info messages

Log records go to stderr, results (a verb's tables, the paths it wrote) to stdout with `print` (docs/cli.md).
As a library (`import saeseeds as ss`) nothing is configured: the package logger has only a NullHandler (the
logging HOWTO's etiquette) and the root logger is never touched; progress bars do not depend on logging.
`logging.basicConfig(level=logging.INFO)`, or `setup_logging()`, shows the status lines in a notebook.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LOGGER = "saeseeds"
"""Name of the package logger; every module's `logging.getLogger(__name__)` is below it."""


class _Formatter(logging.Formatter):
    """INFO as the bare message (the status lines read as before), others prefixed with their level;
    DEBUG also with the seconds since start and the module (`debug +1.2s api.comparison: ...`)."""

    def __init__(self, rank: int | None = None) -> None:
        super().__init__()
        self.rank = "" if rank is None else f"[rank {rank}] "

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno == logging.INFO:
            return self.rank + message
        if record.levelno < logging.INFO:
            where = record.name.removeprefix(f"{LOGGER}.")
            return f"{self.rank}debug +{record.relativeCreated / 1000:.1f}s {where}: {message}"
        return f"{self.rank}{record.levelname.lower()}: {message}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is now (a test's capture, a redirected stream), above a live tqdm bar."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)  # clears and redraws a bar on a terminal
            sys.stderr.flush()
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Send the `saeseeds` records at `level` and above to stderr (called once by the CLI; idempotent).

    Only the package logger is configured (one handler, replacing an earlier one of ours; no propagation to
    the root logger). WARNING or above also silences progress bars and library messages (`--quiet`); DEBUG
    turns the Hugging Face libraries' info messages on. Under torchrun, ranks other than 0 log only warnings
    (and everything at DEBUG), prefixed with their rank."""
    from saeseeds.progress import set_quiet

    rank = _rank()
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(rank or None))  # rank 0 speaks for the job, unprefixed
    logger.addHandler(handler)
    logger.setLevel(level if not rank or level <= logging.DEBUG else max(level, logging.WARNING))
    logger.propagate = False
    set_quiet(level >= logging.WARNING)
    if level <= logging.DEBUG:
        verbose_libraries()


class _SayFirst(logging.Filter):
    """Holds one status line back until the command says something else (INFO or above) and then says it
    first: a command refused on its input still prints its error as the only line on stderr."""

    def __init__(self, handler: logging.Handler, line: str) -> None:
        super().__init__()
        self.handler, self.line = handler, line

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            self.handler.removeFilter(self)
            self.handler.handle(logging.LogRecord(LOGGER, logging.INFO, __file__, 0, self.line, None, None))
        return True


def say_with_first_status(line: str) -> None:
    """Log `line` (INFO) just before the command's first status line, or never if it is refused first."""
    logger = logging.getLogger(LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        handler.addFilter(_SayFirst(handler, line))


def reset_logging() -> None:
    """Undo `setup_logging` (for code that runs the CLI's `main` in-process, like the tests): our handler off,
    the package logger back to its library defaults (level unset, propagating)."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def verbose_libraries() -> None:
    """Info messages of transformers / datasets / huggingface_hub back on (unless their env says otherwise)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info")
    os.environ.setdefault("DATASETS_VERBOSITY", "info")
    for name in ("transformers", "datasets", "huggingface_hub"):
        if logging.getLogger(name).level > logging.INFO:
            logging.getLogger(name).setLevel(logging.INFO)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_info()


def level_from_flags(quiet: bool, verbose: bool) -> int:
    """The log level of the common flags: WARNING for --quiet, DEBUG for --verbose, else INFO."""
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


def log_written(root: Path, since: float, *, limit: int = 50) -> None:
    """DEBUG: every file under `root` (a file or a directory) modified since `since` (a time.time()), with
    its size; at most `limit` lines, then how many more."""
    log = logging.getLogger(f"{LOGGER}.files")
    if not log.isEnabledFor(logging.DEBUG) or not root.exists():
        return
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    written = [p for p in files if p.stat().st_mtime >= since - 1.0]  # 1 s: coarse file system clocks
    for path in written[:limit]:
        log.debug("wrote %s (%s bytes)", path, f"{path.stat().st_size:,}")
    if len(written) > limit:
        log.debug("... and %d more files under %s", len(written) - limit, root)


def _rank() -> int | None:
    raw = os.environ.get("RANK", "")
    return int(raw) if raw.isdigit() else None


