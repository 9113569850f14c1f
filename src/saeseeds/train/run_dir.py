"""The run directory: run.json, one sparsify-layout checkpoint per SAE, trainer state for resume."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

from saeseeds.errors import CheckpointError

MANIFEST = "run.json"
STATE_DIR = ".state"
_SEED_DIR = re.compile(r"^seed(-?\d+)$")


class CheckpointRef(NamedTuple):
    """Where one SAE of a run lives."""

    hookpoint: str
    sae_name: str
    seed: int
    path: Path


def checkpoint_dir(run_dir: Path, hookpoint: str, sae_name: str, seed: int) -> Path:
    """`<run>/<hookpoint>/<sae-name>/seed<N>`."""
    return Path(run_dir) / hookpoint / sae_name / f"seed{seed}"


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's run.json; CheckpointError if the directory is not a run."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a saeseeds run directory: {MANIFEST} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err


def is_run_dir(path: str | Path) -> bool:
    """True when `path` holds a run.json."""
    return (Path(path) / MANIFEST).is_file()


def list_checkpoints(run_dir: str | Path) -> list[CheckpointRef]:
    """Every SAE checkpoint of a run, sorted by hookpoint, configuration and seed."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    refs = []
    for entry in manifest.get("saes", []):
        path = run_dir / entry["path"]
        if (path / "cfg.json").is_file():
            refs.append(CheckpointRef(entry["hookpoint"], entry["name"], int(entry["seed"]), path))
    if not refs:  # a run written by another tool: walk the tree
        for cfg in sorted(run_dir.rglob("cfg.json")):
            match = _SEED_DIR.match(cfg.parent.name)
            if match and STATE_DIR not in cfg.parts:
                rel = cfg.parent.relative_to(run_dir).parts
                refs.append(CheckpointRef("/".join(rel[:-2]), rel[-2], int(match.group(1)), cfg.parent))
    return sorted(refs, key=lambda r: (r.hookpoint, r.sae_name, r.seed))


def group_by_config(refs: list[CheckpointRef]) -> dict[tuple[str, str], list[CheckpointRef]]:
    """Checkpoints of the same hookpoint and SAE configuration (the seeds to compare with each other)."""
    groups: dict[tuple[str, str], list[CheckpointRef]] = {}
    for ref in refs:
        groups.setdefault((ref.hookpoint, ref.sae_name), []).append(ref)
    return groups


def load_run_config(run_dir: str | Path):  # -> RunConfig
    """The RunConfig a run was trained with (from run.json), e.g. to rebuild its evaluation data."""
    from saeseeds.config import RunConfig, from_dict

    manifest = read_manifest(run_dir)
    return from_dict(RunConfig, manifest["config"], f"{Path(run_dir) / MANIFEST}:config")


def eval_batches_for_run(run_dir: str | Path) -> list:
    """Rebuild the run's held-out evaluation batches from its config (deterministic sources)."""
    from saeseeds.data.sources import build_source

    return build_source(load_run_config(run_dir)).eval
