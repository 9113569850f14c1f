"""Resumable trainer state, committed as one atomic unit, and the check that a resume changes nothing that trains.

Commit protocol (`commit_state`):
  1. every member's state goes into a fresh directory `.state/step-<N>-<random>/` (fsynced files and dirs);
  2. `.state/trainer.json` (step, fingerprint, scales, config, file sizes, `set` = that directory) is
     replaced atomically: this one rename is the commit point;
  3. every other entry of `.state/` (older sets, half-written sets of a killed save) is removed.
A kill at any instant leaves `trainer.json` naming a complete set, so `--resume` continues exactly from it.
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
from saeseeds.records import write_record
from saeseeds.training.run_dir import STATE_DIR

POINTER = "trainer.json"
POINTER_SCHEMA = "saeseeds.trainer_state/1"

RESUME_ALLOWED = frozenset({"train.progress", "train.eval_every", "train.checkpoint_every", "train.store_eval_tokens",
                            "train.log_every", "train.tensorboard", "train.wandb_project"})
"""Config fields a resume may change: they decide what is shown, measured or saved, never the weights."""


def commit_state(run_dir: Path, members: Mapping[str, dict[str, Any]], trainer: dict[str, Any]) -> None:
    """Write a complete new state set, then point trainer.json at it (see the module docstring)."""
    set_name = new_set_name(int(trainer["step"]))
    sizes = write_member_states(run_dir, set_name, members)
    commit_pointer(run_dir, set_name, sizes, trainer)


def new_set_name(step: int) -> str:
    """A fresh state-set directory name for `step` (random suffix: a killed save never collides)."""
    return f"step-{step}-{secrets.token_hex(4)}"


def write_member_states(run_dir: Path, set_name: str, members: Mapping[str, dict[str, Any]]) -> dict[str, int]:
    """Step 1 of the commit: these members' files in `.state/<set_name>/`, fsynced; their sizes.

    Under torch.distributed every rank calls this for its own members with the same `set_name`.
    """
    state_dir = run_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    set_dir = state_dir / set_name
    set_dir.mkdir(mode=0o777, exist_ok=True)  # the umask decides, as for every other directory
    sizes = {}
    for key, state in members.items():
        path = set_dir / f"{key}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        sizes[key] = path.stat().st_size
    fsync_tree(set_dir)
    fsync_path(state_dir)
    return sizes


def commit_pointer(run_dir: Path, set_name: str, sizes: Mapping[str, int], trainer: dict[str, Any]) -> None:
    """Steps 2-3 of the commit: point trainer.json at the complete set, then drop every other entry."""
    state_dir = run_dir / STATE_DIR
    write_record(state_dir / POINTER, POINTER_SCHEMA, trainer | {"set": set_name, "sizes": dict(sizes)})
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
    """One member's committed state; CheckpointError naming the file when it is missing, truncated or unreadable."""
    set_dir = run_dir / STATE_DIR / trainer.get("set", "")  # no `set`: a run from before state sets
    path = set_dir / f"{key}.pt"
    expected = trainer.get("sizes", {}).get(key)
    try:
        if expected is not None and path.stat().st_size != expected:
            raise ValueError(f"{path.stat().st_size} bytes where {expected} were committed")
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
