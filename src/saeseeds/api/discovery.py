"""Which SAEs to compare with which: run directories give one seed set per (hookpoint, configuration);
checkpoints named directly form one more set."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from saeseeds.align.cross_seed import SeedSet
from saeseeds.errors import CheckpointError
from saeseeds.training.run_dir import group_by_config, is_run_dir, list_checkpoints


def seed_sets(inputs: Sequence[str | Path] | str | Path) -> list[SeedSet]:
    """Seed sets of run directories (one per hookpoint and configuration) and of loose checkpoints."""
    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    sets: list[SeedSet] = []
    loose_names: list[str] = []
    loose_paths: list[Path] = []
    for path in paths:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist")
        if is_run_dir(path):
            refs = list_checkpoints(path)
            if not refs:
                raise CheckpointError(f"run directory {path} holds no SAE checkpoints")
            for (hook, name), members in group_by_config(refs).items():
                label = f"{path.name}:{hook}/{name}" if len(paths) > 1 else f"{hook}/{name}"
                sets.append(SeedSet(label, tuple(f"seed{m.seed}" for m in members), tuple(m.path for m in members),
                                    hook, name, tuple(m.seed for m in members), path))
        else:
            loose_names.append(_unique(path.resolve().name or str(path), loose_names))
            loose_paths.append(path)
    if loose_paths:
        sets.append(SeedSet("checkpoints", tuple(loose_names), tuple(loose_paths)))
    return sets


def comparable(sets: list[SeedSet]) -> list[SeedSet]:
    """The sets with at least two SAEs; CheckpointError when there are none."""
    out = [s for s in sets if len(s) >= 2]
    if not out:
        raise CheckpointError("nothing to compare: give at least two checkpoints, or a run with two seeds")
    return out


def _unique(name: str, taken: list[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... when it is already used."""
    out, k = name, 1
    while out in taken:
        k += 1
        out = f"{name}-{k}"
    return out


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"
