"""Output directories that never clobber: each verb writes only into an empty directory or its own earlier
output of the same kind (replaced whole, with --overwrite), and marks what it wrote.

The marker `.saeseeds-output.json` (schema `saeseeds.output/1`) names the kind (compare, analyze, ...); a directory
without it that is not empty is someone else's, and no verb writes into it, with or without --overwrite. A run
directory (`train`) is recognised by its run.json (schema `saeseeds.run/1`) or its `.state/` instead.

Before a verb looks at its --out, `recover_out` finishes what a killed earlier writer left beside it: the backup of
an interrupted --overwrite swap is put back, stale temporaries are removed (saeseeds.atomic.recover_target).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from saeseeds.atomic import recover_target
from saeseeds.errors import CheckpointError, ConfigError, SaeseedsError
from saeseeds.records import write_record
from saeseeds.run_layout import MANIFEST as RUN_FILE
from saeseeds.run_layout import POINTER, RUN_SCHEMA, STATE_SET
from saeseeds.run_layout import STATE_DIR as RUN_STATE

MARKER = ".saeseeds-output.json"
MARKER_SCHEMA = "saeseeds.output/1"
log = logging.getLogger(__name__)


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


def recover_out(out: str | Path) -> None:
    """Finish what a killed writer of `out` left beside it (saeseeds.atomic.recover_target); --verbose says what."""
    out = Path(out)
    restored, removed = recover_target(out)
    if restored is not None:
        log.debug("%s: restored the earlier output that an interrupted --overwrite had moved aside (%s)",
                  out, restored.name)
    if removed:
        log.debug("%s: removed %d leftover(s) of killed writers: %s", out, len(removed),
                  ", ".join(p.name for p in removed))


def check_output_dir(out: str | Path, kind: str, *, overwrite: bool = False) -> None:
    """Refuse an `--out` that would mix or destroy other files; ConfigError naming the directory and why.

    First puts back an output an interrupted --overwrite left aside (`recover_out`)."""
    out = Path(out)
    recover_out(out)
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


# --------------------------------------------------------------------------------------------
# run directories (train)


def holds_run(out: str | Path) -> bool:
    """True when `out` holds an earlier saeseeds run: a saeseeds run.json, or a real `.state/` holding only trainer
    state (trainer.json, state sets, temporaries: a run killed before it wrote run.json)."""
    from saeseeds.atomic import BACKUP_SUFFIX, TEMP_SUFFIX

    out = Path(out)
    state = out / RUN_STATE
    if state.is_dir() and not state.is_symlink() and any(state.iterdir()) and all(
        e.name == POINTER or STATE_SET.fullmatch(e.name) or e.name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX))
        for e in state.iterdir()
    ):
        return True
    try:
        record = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    schema = record.get("schema", record.get("format"))
    return schema == RUN_SCHEMA or (schema is None and "config" in record and "saes" in record)


def not_a_run_error(out: Path, *, overwrite: bool) -> CheckpointError:
    """The refusal of a non-empty `out` that holds no saeseeds run (never suggests --overwrite: it would not help)."""
    what = f"--out {out} is not empty and holds no saeseeds run (no {RUN_FILE} or {RUN_STATE}/)"
    if overwrite:
        return CheckpointError(f"{what}; --overwrite replaces only an earlier saeseeds run, never other files: "
                               "choose an empty or new directory")
    return CheckpointError(f"{what}; choose an empty or new directory")


def check_run_overwrite(out: str | Path, ignore: Callable[[Path], bool] = lambda p: False) -> None:
    """Refuse `train --overwrite` unless `out` is new, empty (entries `ignore` accepts aside) or an earlier run.

    A symbolic link is refused too: replacing a run through it would delete what it points to."""
    out = Path(out)
    if out.is_symlink():
        raise CheckpointError(f"--out {out} is a symbolic link (to {out.resolve()}); --overwrite replaces only a "
                              "real directory: give the directory itself")
    if not out.is_dir() or holds_run(out):
        return
    if any(not ignore(entry) for entry in out.iterdir()):
        raise not_a_run_error(out, overwrite=True)


def check_inputs_outside(out: str | Path, inputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse to replace `out` when an input of the run (what, path) lies inside it: it would be deleted."""
    root = Path(out).resolve()
    for what, path in inputs:
        if not str(path):
            continue
        where = Path(path).expanduser().resolve()
        if where == root or root in where.parents:
            raise ConfigError(f"--overwrite would delete {what} {path}: it lies inside --out {out}; "
                              "move it out of the run directory first")


def run_inputs(cfg: object, config_path: str | Path | None) -> list[tuple[str, str | Path]]:
    """The local files a run reads (its config file, data.path, a local lm.model / lm.dataset), labelled."""
    inputs: list[tuple[str, str | Path]] = [("the config file", config_path)] if config_path else []
    data, lm = getattr(cfg, "data", None), getattr(cfg, "lm", None)
    if data is not None and data.path:
        inputs.append(("data.path", data.path))
    for field in ("model", "dataset"):
        value = getattr(lm, field, "") if lm is not None else ""
        if value and Path(value).expanduser().exists():
            inputs.append((f"lm.{field}", value))
    return inputs


def check_train_out(out: str | Path, cfg: object, config_path: str | Path | None, *, overwrite: bool) -> None:
    """What `train` does to its --out before anything else: `recover_out`, and with --overwrite refuse a run whose
    config or data lie inside it (the trainer's own check refuses anything but an earlier run)."""
    recover_out(out)
    if overwrite:
        check_inputs_outside(out, run_inputs(cfg, config_path))


def committed_step(out: Path) -> int:
    """The step of the last checkpoint a run recorded in run.json (0 when none beyond the start, or no run.json)."""
    try:
        return int(json.loads((out / RUN_FILE).read_text()).get("step", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


@contextmanager
def removed_if_failed_fresh(out: str | Path, *, enabled: bool = True,
                            keep: Callable[[Path], bool] = lambda p: False) -> Iterator[None]:
    """Undo a failed verb's fresh `out`: if the block raises bad-input (SaeseedsError) and `out` was missing or
    empty when it began, what the verb created is removed (a directory it made, with parents it made; the
    entries of one that was empty), unless `keep(out)` says there is progress worth resuming."""
    out = Path(out)
    created = _first_missing(out)
    was_empty = created is None and out.is_dir() and not out.is_symlink() and not any(out.iterdir())
    try:
        yield
    except SaeseedsError:
        if enabled and (created is not None or was_empty) and out.is_dir() and not keep(out):
            _undo(out, created)
        raise


def _first_missing(out: Path) -> Path | None:
    """The outermost of `out` and its parents that does not exist yet (what creating `out` would make), or None."""
    missing = None
    for path in (out.absolute(), *out.absolute().parents):
        if path.exists() or path.is_symlink():
            break
        missing = path
    return missing


def _undo(out: Path, created: Path | None) -> None:
    """Remove `created` (made by the failed verb), or the entries of `out` when it existed empty."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
    else:
        for entry in out.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    log.debug("%s: removed what the failed run had written there (it had committed no checkpoint)", out)
