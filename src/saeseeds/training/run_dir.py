"""The run directory: run.json, one sparsify-layout checkpoint per SAE, eval/ (held-out set), .state/ (resume)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.names import check_name, check_relative
from saeseeds.records import relative_path

MANIFEST = "run.json"
RUN_SCHEMA = "saeseeds.run/1"
"""run.json's `schema` (runs written before it have none; they read the same)."""
STATE_DIR = ".state"
_SEED_DIR = re.compile(r"^seed(-?\d+)$")


class CheckpointRef(NamedTuple):
    """Where one SAE of a run lives."""

    hookpoint: str
    sae_name: str
    seed: int
    path: Path


def checkpoint_dir(run_dir: Path, hookpoint: str, sae_name: str, seed: int) -> Path:
    """`<run>/<hookpoint>/<sae-name>/seed<N>`; names that would leave or hide in the run are refused."""
    hookpoint, sae_name = check_name(hookpoint, "hookpoint", ConfigError), check_name(sae_name, "SAE name", ConfigError)
    return Path(run_dir) / hookpoint / sae_name / f"seed{int(seed)}"


DATA_PATH_KEYS = ("path", "cache_path")
"""Keys of run.json's `data` that are file locations (an array file, a cache directory): stored relative to the run."""


def manifest_data(info: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The source's info as run.json stores it: its file locations relative to the run directory."""
    return {k: relative_path(v, run_dir) if k in DATA_PATH_KEYS and isinstance(v, str) and v else v
            for k, v in info.items()}


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's run.json; CheckpointError if the directory is not a run."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a saeseeds run directory: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path} should hold a JSON object, got {type(manifest).__name__}")
    return manifest


def is_run_dir(path: str | Path) -> bool:
    """True when `path` holds a run.json."""
    return (Path(path) / MANIFEST).is_file()


def list_checkpoints(run_dir: str | Path, *, allow_missing: bool = False) -> list[CheckpointRef]:
    """Every SAE checkpoint of a run, sorted by hookpoint, configuration and seed.

    A checkpoint that run.json lists but the disk lacks is a CheckpointError naming it; with `allow_missing`
    it is skipped with a warning instead.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    refs = []
    entries = manifest.get("saes") or []
    if not isinstance(entries, list):
        raise CheckpointError(f"{run_dir / MANIFEST}: saes should be a list, got {type(entries).__name__}")
    for i, entry in enumerate(entries):
        try:
            where = f"{run_dir / MANIFEST}: saes[{i}]"
            path = run_dir / check_relative(entry["path"], f"{where}.path", CheckpointError)  # stays inside the run
            ref = CheckpointRef(check_name(entry["hookpoint"], f"{where}.hookpoint", CheckpointError),
                                check_name(entry["name"], f"{where}.name", CheckpointError), int(entry["seed"]), path)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{run_dir / MANIFEST}: saes[{i}] is not a checkpoint entry with path, hookpoint, name and an "
                f"integer seed (problem: {err!r})"
            ) from err
        if (path / "cfg.json").is_file():
            refs.append(ref)
        elif allow_missing:
            warnings.warn(f"{path}: checkpoint listed in {MANIFEST} is missing; skipped", stacklevel=2)
        else:
            raise CheckpointError(
                f"{path}/cfg.json is missing, but {run_dir / MANIFEST} lists seed {entry['seed']} of "
                f"{entry['hookpoint']}/{entry['name']} (status {manifest.get('status', '?')!r})"
            )
    if not manifest.get("saes"):  # a run written by another tool: walk the tree
        for cfg in sorted(run_dir.rglob("cfg.json")):
            match = _SEED_DIR.match(cfg.parent.name)
            if match and STATE_DIR not in cfg.parts:
                rel = cfg.parent.relative_to(run_dir).parts
                refs.append(CheckpointRef("/".join(rel[:-2]), rel[-2], int(match.group(1)), cfg.parent))
    return sorted(refs, key=lambda r: (r.hookpoint, r.sae_name, r.seed))


def load_latent_frequencies(run_dir: str | Path, hookpoint: str, name: str, seed: int) -> np.ndarray | None:
    """Per-latent firing frequency (float64) of one SAE on the run's held-out set, or None if not stored."""
    from saeseeds.training.eval_store import read_latent_frequency

    return read_latent_frequency(Path(run_dir), f"{hookpoint}/{name}/seed{seed}")


def group_by_config(refs: list[CheckpointRef]) -> dict[tuple[str, str], list[CheckpointRef]]:
    """Checkpoints of the same hookpoint and SAE configuration (the seeds to compare with each other)."""
    groups: dict[tuple[str, str], list[CheckpointRef]] = {}
    for ref in refs:
        groups.setdefault((ref.hookpoint, ref.sae_name), []).append(ref)
    return groups


def load_run_config(run_dir: str | Path):  # -> RunConfig
    """The RunConfig a run was trained with (from run.json), e.g. to rebuild its evaluation data; its data.path
    is the file run.json records, relative to the run (`saeseeds.data.sources.resolve_run_data`), not the cwd."""
    from saeseeds.config import RunConfig, from_dict
    from saeseeds.data.sources import resolve_run_data

    manifest = read_manifest(run_dir)
    if not isinstance(manifest.get("config"), dict):
        raise CheckpointError(
            f"{Path(run_dir) / MANIFEST} has no 'config' object (the run's training config); "
            "it was not written by `saeseeds train` or is damaged"
        )
    cfg = from_dict(RunConfig, manifest["config"], f"{Path(run_dir) / MANIFEST}:config")
    return resolve_run_data(cfg, manifest, run_dir)


def eval_batches_for_run(run_dir: str | Path) -> list:
    """The run's held-out batches (hookpoint → raw activations): the stored set, else rebuilt from its config."""
    from saeseeds.training.eval_store import read_stored_batches

    stored = read_stored_batches(Path(run_dir), read_manifest(run_dir))
    if stored is not None:
        return stored
    from saeseeds.data.sources import build_source

    return build_source(load_run_config(run_dir)).eval
