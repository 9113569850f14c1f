"""Resumable trainer state, committed as one atomic unit, and the check that a resume changes nothing that trains.

Commit protocol (the trainer calls the steps: `new_set_name`, `write_member_states`, then `commit_pointer`):
  1. every member's state goes into a fresh directory `.state/step-<N>-<random>/` (fsynced files and dirs);
  2. `.state/trainer.json` (step, fingerprint, scales, config, each file's size and SHA-256, `set` = that
     directory) is replaced atomically: this one rename is the commit point;
  3. every other entry of `.state/` (older sets, half-written sets of a killed save) is removed.
A kill at any instant leaves `trainer.json` naming a complete set, so `--resume` continues exactly from it.
A resume reads each file only if it is a plain file (no link) of the committed size and SHA-256.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from saeseeds.atomic import fsync_path, fsync_tree
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.hashing import HashingWriter, file_sha256
from saeseeds.records import write_record
from saeseeds.run_layout import POINTER, STATE_DIR
from saeseeds.training.diskspace import disk_full_guard, nbytes

POINTER_SCHEMA = "saeseeds.trainer_state/1"

RESUME_ALLOWED = frozenset({"train.progress", "train.eval_every", "train.checkpoint_every", "train.store_eval_tokens",
                            "train.lm_loss", "train.log_every", "train.tensorboard", "train.wandb_project"})
"""Config fields a resume may change: they decide what is shown, measured or saved, never the weights."""


def new_set_name(step: int) -> str:
    """A fresh state-set directory name for `step` (random suffix: a killed save never collides)."""
    return f"step-{step}-{secrets.token_hex(4)}"


def write_member_states(
    run_dir: Path, set_name: str, members: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Step 1 of the commit: these members' files in `.state/<set_name>/`, fsynced; each one's size and SHA-256.

    Under torch.distributed every rank calls this for its own members with the same `set_name`. A full disk
    is one DiskFullError line; the half-written set is removed (it was never committed).
    """
    state_dir = run_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    set_dir = state_dir / set_name
    set_dir.mkdir(mode=0o777, exist_ok=True)  # the umask decides, as for every other directory
    files = {}
    try:
        for key, state in members.items():
            path = set_dir / f"{key}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with disk_full_guard(path, nbytes(state)), open(path, "wb") as fh:
                writer = HashingWriter(fh)  # through a Python file: a full disk surfaces as its OSError
                torch.save(state, writer)
            files[key] = {"size": path.stat().st_size, "sha256": writer.hexdigest()}
        with disk_full_guard(set_dir, 0):
            fsync_tree(set_dir)
            fsync_path(state_dir)
    except Exception:
        shutil.rmtree(set_dir, ignore_errors=True)
        raise
    return files


def commit_pointer(
    run_dir: Path, set_name: str, files: Mapping[str, Mapping[str, Any]], trainer: dict[str, Any]
) -> None:
    """Steps 2-3 of the commit: point trainer.json at the complete set (with each file's size and SHA-256),
    then drop every other entry."""
    state_dir = run_dir / STATE_DIR
    pointer = trainer | {"set": set_name, "sizes": {k: int(f["size"]) for k, f in files.items()},
                         "sha256": {k: str(f["sha256"]) for k, f in files.items()}}
    with disk_full_guard(state_dir / POINTER, len(json.dumps(pointer, default=str))):
        write_record(state_dir / POINTER, POINTER_SCHEMA, pointer)
    fsync_path(state_dir)
    remove_uncommitted(state_dir, keep=set_name)


def remove_uncommitted(state_dir: Path, keep: str) -> None:
    """Remove every entry of `.state/` but trainer.json and the set it names (leftovers of a killed save)."""
    for entry in state_dir.iterdir() if state_dir.is_dir() else ():
        if entry.name in (POINTER, keep):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def read_pointer(run_dir: Path) -> dict[str, Any]:
    """The committed trainer.json; CheckpointError (one line) when it is missing or corrupt."""
    path = run_dir / STATE_DIR / POINTER
    try:
        trainer = json.loads(path.read_text())
        for key in ("step", "fingerprint", "scales", "members"):
            trainer[key]  # noqa: B018 - presence check
    except FileNotFoundError as err:
        raise CheckpointError(f"--resume: {run_dir} holds no interrupted run (no {STATE_DIR}/{POINTER})") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"--resume: {path} is corrupt ({type(err).__name__}: {err}); cannot resume") from err
    return trainer


def load_member_state(run_dir: Path, trainer: Mapping[str, Any], key: str, device: torch.device) -> dict[str, Any]:
    """One member's committed state; CheckpointError naming the file when it is missing, a link, truncated,
    changed since the commit (SHA-256) or unreadable. States from before digests are checked by size only."""
    set_dir = run_dir / STATE_DIR / trainer.get("set", "")  # no `set`: a run from before state sets
    path = set_dir / f"{key}.pt"
    try:
        expected, digest = trainer.get("sizes", {}).get(key), trainer.get("sha256", {}).get(key)
        if path.is_symlink():
            raise ValueError("it is a symbolic link, not the file the commit wrote")
        if expected is not None and path.stat().st_size != expected:
            raise ValueError(f"{path.stat().st_size} bytes where {expected} were committed")
        if digest is not None and file_sha256(path) != digest:
            raise ValueError("its SHA-256 differs from the one committed in trainer.json (the file changed)")
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types on a damaged file
        raise CheckpointError(f"--resume: cannot read trainer state {path}: {err}".splitlines()[0]) from err


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of a nested dict/list config (lists of dicts by index, other lists whole)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}{key}.")
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            out |= _flatten(item, f"{prefix}{i}.")
        return out
    return {prefix.rstrip("."): value}


def config_changes(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs between the interrupted run's config and the requested one: path → (old, new)."""
    old, new = _flatten(dict(stored)), _flatten(dict(requested))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def check_resume_config(stored: Mapping[str, Any], requested: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The allowed changes; ConfigError naming every change that would alter training."""
    changes = config_changes(stored, requested)
    refused = {k: v for k, v in changes.items() if k not in RESUME_ALLOWED}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ConfigError(
            f"--resume: the config differs from the interrupted run's in fields that change training ({listed}); "
            f"resume with the original values or start a new run (only {', '.join(sorted(RESUME_ALLOWED))} may change)"
        )
    return changes
