"""Output directories that never clobber: each verb writes only into an empty directory or its own earlier
output of the same kind (replaced whole, with --overwrite), and marks what it wrote.

The marker `.saeseeds-output.json` (schema `saeseeds.output/1`) names the kind (compare, analyze, ...); a directory
without it that is not empty is someone else's, and no verb writes into it, with or without --overwrite.
"""

from __future__ import annotations

import json
from pathlib import Path

from saeseeds.errors import ConfigError
from saeseeds.records import read_record as read_record  # where it lived before saeseeds.records
from saeseeds.records import write_record

MARKER = ".saeseeds-output.json"
MARKER_SCHEMA = "saeseeds.output/1"


def output_kind(directory: Path) -> str | None:
    """The kind recorded in a directory's marker, or None when it has none (or it is unreadable)."""
    try:
        return str(json.loads((Path(directory) / MARKER).read_text()).get("kind"))
    except (OSError, ValueError, AttributeError):
        return None


def check_creatable(out: str | Path, flag: str = "--out") -> None:
    """Refuse a directory that cannot be created because a file sits where one of its parents should be."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out}: exists and is a file, not a directory")
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {out}: {parent} is a file, not a directory")
            return


def check_output_dir(out: str | Path, kind: str, *, overwrite: bool = False) -> None:
    """Refuse an `--out` that would mix or destroy other files; ConfigError naming the directory and why."""
    out = Path(out)
    if not out.exists():
        check_creatable(out)
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is a file, not a directory")
    if not any(out.iterdir()):
        return
    found = output_kind(out)
    if found == kind:
        if overwrite:
            return
        raise ConfigError(
            f"--out {out} already holds a {kind} output; pass --overwrite to replace it, or choose another directory"
        )
    if found is not None:
        raise ConfigError(f"--out {out} holds a saeseeds {found} output; {kind} never writes into it")
    raise ConfigError(
        f"--out {out} is a non-empty directory that is not a saeseeds {kind} output; choose an empty or new one"
    )


def mark_output(directory: str | Path, kind: str) -> None:
    """Record in `directory` that it is a `kind` output (done first, inside the directory being built)."""
    write_record(Path(directory) / MARKER, MARKER_SCHEMA, {"kind": kind})
