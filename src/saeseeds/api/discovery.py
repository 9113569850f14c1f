"""Which SAEs to compare with which: run directories give one seed set per (hookpoint, configuration), a folder
of `seed<N>` checkpoints (sparsify's `--init_seeds` layout) one per parent folder, and checkpoints named directly
(local folders or hub names) form one more set."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from saeseeds.align.cross_seed import SeedSet
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.names import safe_slug
from saeseeds.run_layout import SEED_DIR, seed_dir_name
from saeseeds.sae.formats import is_checkpoint_dir
from saeseeds.sae.hub import HF_PREFIX, SAELENS_PREFIX, normalized, resolve_checkpoint
from saeseeds.training.run_dir import Run


def seed_sets(inputs: Sequence[str | Path] | str | Path, *, names: Sequence[str] | None = None) -> list[SeedSet]:
    """Seed sets of run directories, of folders of `seed<N>` checkpoints, and of loose checkpoints.

    `names` labels the loose checkpoints in order (default: the shortest trailing part of each path that tells
    them apart, e.g. `sparsify/seed0` and `saelens/seed0`).
    """
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    sets: list[SeedSet] = []
    loose_keys: list[tuple[str, ...]] = []
    loose_paths: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            local = resolve_checkpoint(str(given))  # a hub name, or "does not exist"
            text = normalized(str(given)).removeprefix(HF_PREFIX).removeprefix(SAELENS_PREFIX)
            if is_checkpoint_dir(local):
                loose_paths.append(local)
                loose_keys.append(tuple(text.split("/")))
            else:  # a hub folder of seed<N> checkpoints
                sets.extend(folder_seed_sets(local, prefix=text if len(paths) > 1 else ""))
        elif Run.is_run(path):
            sets.extend(Run.open(path).seed_sets(label_prefix=path.name if len(paths) > 1 else ""))
        elif is_checkpoint_dir(path) or not path.is_dir():
            loose_paths.append(path)
            loose_keys.append(path.resolve().parts[1:] or (str(path),))
        else:
            sets.extend(folder_seed_sets(path, prefix=path.name if len(paths) > 1 else ""))
    if loose_paths:
        sets.append(SeedSet("checkpoints", tuple(loose_names(loose_keys, names)), tuple(loose_paths)))
    elif names:
        raise ConfigError("--names: no checkpoints were given directly (runs name their seeds themselves)")
    return sets


def folder_seed_sets(root: Path, *, prefix: str = "") -> list[SeedSet]:
    """One seed set per folder holding `seed<N>` checkpoints under `root` (sparsify's multi-seed layout,
    `<run>/<hookpoint>/seed<N>/`); CheckpointError when `root` holds none."""
    found = checkpoint_dirs(root)
    groups: dict[Path, list[tuple[int, Path]]] = {}
    for ckpt in found:
        match = SEED_DIR.match(ckpt.name)
        if match:
            groups.setdefault(ckpt.parent, []).append((int(match.group(1)), ckpt))
    if not groups:
        if found:
            shown = ", ".join(str(p.relative_to(root)) for p in found[:4])
            raise CheckpointError(
                f"{root} holds {len(found)} checkpoint(s) ({shown}) but no seed<N> folders of one SAE; "
                "name the checkpoints to compare directly"
            )
        raise CheckpointError(
            f"{root} holds no SAE checkpoint: expected cfg.json + sae.safetensors (saeseeds/sparsify), "
            "sae_weights.safetensors (SAELens) or ae.pt (dictionary_learning), a run directory (run.json), "
            "or folders of such checkpoints"
        )
    sets = []
    for parent, members in sorted(groups.items()):
        members.sort()
        hook = parent.name if parent == root else str(parent.relative_to(root))
        label = f"{prefix}:{hook}" if prefix else hook
        sets.append(SeedSet(label, tuple(seed_dir_name(s) for s, _ in members), tuple(p for _, p in members),
                            hook, "", tuple(s for s, _ in members)))
    return sets


def checkpoint_dirs(root: Path) -> list[Path]:
    """Every checkpoint folder under `root` (any format), skipping hidden folders such as `.state`."""
    out = []
    for dirpath, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(dirpath)
        if here != root and is_checkpoint_dir(here):
            out.append(here)
            dirs[:] = []
    return out


def loose_names(keys: Sequence[tuple[str, ...]], names: Sequence[str] | None = None) -> list[str]:
    """Names of loose checkpoints: `names` when given (checked), else the shortest distinct trailing parts."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(keys):
            raise ConfigError(f"--names: {len(names)} name(s) for {len(keys)} checkpoint(s) given directly")
        bad = [n for n in names if not n.strip() or n != n.strip()]
        if bad or len(set(names)) != len(names):
            raise ConfigError(f"--names: names must be distinct and non-empty, got {names}")
        return names
    distinct = list(dict.fromkeys(keys))  # the same folder given twice is told apart by -2 below
    depth = [1] * len(distinct)
    while True:
        short = ["/".join(k[-d:]) for k, d in zip(distinct, depth, strict=True)]
        clash = {n for n in short if short.count(n) > 1}
        grow = [i for i, n in enumerate(short) if n in clash and depth[i] < len(distinct[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    by_key = dict(zip(distinct, short, strict=True))
    unique: list[str] = []
    for key in keys:
        unique.append(_unique(by_key[key], unique))
    return unique


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
    """A file-name-safe version of a label (one visible path component: saeseeds.names.safe_slug)."""
    return safe_slug(text)
