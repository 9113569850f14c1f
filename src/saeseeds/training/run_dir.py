"""The run directory: run.json, one sparsify-layout checkpoint per SAE, eval/ (held-out set), .state/ (resume).

`Run` is a run directory opened once. Every stage that consumes a run (compare, analyze, pool, study, report,
export) takes one instead of a bare path, so run.json is read once, its config parsed once, and the run's data
(the stored held-out set, the training stream) is read back one way, with one check that it is the data the run
was trained on. The names of the files are `saeseeds.run_layout`'s, the ones the trainer writes through; the
module-level readers below (`read_manifest`, `list_checkpoints`, ...) are what `Run` and the trainer build on.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from saeseeds.errors import CheckpointError, ConfigError, DataError
from saeseeds.names import check_name, check_relative
from saeseeds.records import relative_path
from saeseeds.run_layout import (
    CHECKPOINT_CONFIG,
    LATENT_FREQUENCIES,
    MANIFEST,
    METRICS,
    RUN_SCHEMA,
    SEED_DIR,
    STATE_DIR,
    milestone_dir,
    seed_dir_name,
)

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["MANIFEST", "RUN_SCHEMA", "STATE_DIR", "CheckpointRef", "Run", "checkpoint_dir", "group_by_config",
           "is_run_dir", "list_checkpoints", "load_latent_frequencies", "load_run_config", "manifest_data",
           "member_key", "read_latent_frequencies", "read_manifest", "run_config_from"]


class CheckpointRef(NamedTuple):
    """Where one SAE of a run lives."""

    hookpoint: str
    sae_name: str
    seed: int
    path: Path


def checkpoint_dir(run_dir: Path, hookpoint: str, sae_name: str, seed: int) -> Path:
    """`<run>/<hookpoint>/<sae-name>/seed<N>`; names that would leave or hide in the run are refused."""
    hookpoint, sae_name = check_name(hookpoint, "hookpoint", ConfigError), check_name(sae_name, "SAE name", ConfigError)
    return Path(run_dir) / hookpoint / sae_name / seed_dir_name(seed)


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


def list_checkpoints(run_dir: str | Path, *, allow_missing: bool = False,
                     manifest: dict[str, Any] | None = None) -> list[CheckpointRef]:
    """Every SAE checkpoint of a run, sorted by hookpoint, configuration and seed (`manifest`: its run.json when
    already read).

    A checkpoint that run.json lists but the disk lacks is a CheckpointError naming it; with `allow_missing`
    it is skipped with a warning instead.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir) if manifest is None else manifest
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
        if (path / CHECKPOINT_CONFIG).is_file():
            refs.append(ref)
        elif allow_missing:
            warnings.warn(f"{path}: checkpoint listed in {MANIFEST} is missing; skipped", stacklevel=2)
        else:
            raise CheckpointError(
                f"{path}/cfg.json is missing, but {run_dir / MANIFEST} lists seed {entry['seed']} of "
                f"{entry['hookpoint']}/{entry['name']} (status {manifest.get('status', '?')!r})"
            )
    if not manifest.get("saes"):  # a run written by another tool: walk the tree
        for cfg in sorted(run_dir.rglob(CHECKPOINT_CONFIG)):
            match = SEED_DIR.match(cfg.parent.name)
            if match and STATE_DIR not in cfg.parts:
                rel = cfg.parent.relative_to(run_dir).parts
                refs.append(CheckpointRef("/".join(rel[:-2]), rel[-2], int(match.group(1)), cfg.parent))
    return sorted(refs, key=lambda r: (r.hookpoint, r.sae_name, r.seed))


def read_latent_frequencies(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Every SAE's stored per-latent firing frequency on the held-out set (float64, keyed by `member_key`), read in
    one opening of `eval/latents.safetensors`; {} when the run stored none."""
    from safetensors import SafetensorError, safe_open

    path = Path(run_dir) / LATENT_FREQUENCIES
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {key: fh.get_tensor(key).double().numpy() for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def member_key(hookpoint: str, sae_name: str, seed: int) -> str:
    """`<hookpoint>/<sae-name>/seed<N>`: one SAE's checkpoint folder inside the run, and its key in the eval files
    and metrics."""
    return f"{hookpoint}/{sae_name}/{seed_dir_name(seed)}"


def load_latent_frequencies(run_dir: str | Path, hookpoint: str, name: str, seed: int) -> np.ndarray | None:
    """Per-latent firing frequency (float64) of one SAE on the run's held-out set, or None if not stored."""
    return read_latent_frequencies(run_dir).get(member_key(hookpoint, name, seed))


def group_by_config(refs: list[CheckpointRef]) -> dict[tuple[str, str], list[CheckpointRef]]:
    """Checkpoints of the same hookpoint and SAE configuration (the seeds to compare with each other)."""
    groups: dict[tuple[str, str], list[CheckpointRef]] = {}
    for ref in refs:
        groups.setdefault((ref.hookpoint, ref.sae_name), []).append(ref)
    return groups


def load_run_config(run_dir: str | Path):  # -> RunConfig
    """The RunConfig a run was trained with (from run.json), e.g. to rebuild its evaluation data; its data.path,
    a local lm.model and lm.dataset are the places run.json records, relative to the run, not the cwd
    (`saeseeds.data.sources.resolve_run_data`, `saeseeds.data.run_model.resolve_run_lm`)."""
    return run_config_from(read_manifest(run_dir), run_dir)


def run_config_from(manifest: dict[str, Any], run_dir: str | Path):  # -> RunConfig
    """The RunConfig that run.json's `manifest` records, its data path resolved against `run_dir`."""
    from saeseeds.config import RunConfig, from_dict
    from saeseeds.data.run_model import resolve_run_lm
    from saeseeds.data.sources import resolve_run_data

    if not isinstance(manifest.get("config"), dict):
        raise CheckpointError(
            f"{Path(run_dir) / MANIFEST} has no 'config' object (the run's training config); "
            "it was not written by `saeseeds train` or is damaged"
        )
    cfg = from_dict(RunConfig, manifest["config"], f"{Path(run_dir) / MANIFEST}:config")
    return resolve_run_lm(resolve_run_data(cfg, manifest, run_dir), manifest, run_dir)


DATA_KEYS = ("token_fingerprint", "ground_truth_sha256", "file_sha256", "rows", "d_in")
"""What a rebuilt source's info must share with run.json's `data` to be the run's data."""


class Run:
    """One run directory: its manifest, config, checkpoints, seed sets, stored held-out set and training stream."""

    def __init__(self, path: Path, manifest: dict[str, Any], *, config: Any = None) -> None:
        """Prefer `Run.open`; `config` stands in for the one run.json records (a run being written, a test)."""
        self.path = Path(path)
        self.manifest = manifest
        self._held_out_checked = False
        if config is not None:
            self.__dict__["config"] = config

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run at `path`; CheckpointError in one line when it is not one (no or a bad run.json)."""
        if isinstance(path, Run):
            return path
        return cls(Path(path), read_manifest(path))

    @classmethod
    def containing(cls, path: str | Path, *, depth: int | None = None) -> Run | None:
        """The run holding a checkpoint (or any path inside a run): the nearest parent with a run.json, looking
        at most `depth` levels up (default: every parent); None when there is none or `path` does not exist."""
        path = Path(path)
        if not path.exists():
            return None
        for parent in path.resolve().parents[:depth]:
            if is_run_dir(parent):
                return cls.open(parent)
        return None

    @staticmethod
    def is_run(path: str | Path) -> bool:
        """True when `path` holds a run.json."""
        return is_run_dir(path)

    # ------------------------------------------------------------------ what run.json records
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def data(self) -> dict[str, Any]:
        """run.json's `data` section (what the source was), {} when absent."""
        data = self.manifest.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    @cached_property
    def config(self) -> Any:  # RunConfig
        """The RunConfig the run was trained with, its data path resolved against the run (parsed once)."""
        return run_config_from(self.manifest, self.path)

    def checkpoints(self, *, allow_missing: bool = False) -> list[CheckpointRef]:
        """Every SAE checkpoint of the run, sorted by hookpoint, configuration and seed."""
        return list_checkpoints(self.path, allow_missing=allow_missing, manifest=self.manifest)

    def seed_sets(self, *, label_prefix: str = "") -> list[Any]:  # list[SeedSet]
        """One seed set per (hookpoint, configuration); CheckpointError when the run holds no checkpoint."""
        from saeseeds.align.cross_seed import SeedSet

        refs = self.checkpoints()
        if not refs:
            raise CheckpointError(f"run directory {self.path} holds no SAE checkpoints")
        prefix = f"{label_prefix}:" if label_prefix else ""
        stored = read_latent_frequencies(self.path)  # every member's, in one reading of eval/latents.safetensors
        return [SeedSet(f"{prefix}{hook}/{name}", tuple(seed_dir_name(m.seed) for m in members),
                        tuple(m.path for m in members), hook, name, tuple(m.seed for m in members), self.path,
                        tuple(stored.get(member_key(hook, name, m.seed)) for m in members))
                for (hook, name), members in group_by_config(refs).items()]

    def milestone(self, step: int) -> Path:
        """The folder of the SAE copies kept at `step` (run layout inside)."""
        return milestone_dir(self.path, step)

    def metrics(self) -> Iterator[dict[str, Any]]:
        """Every record of metrics.jsonl in order (a line that is not a JSON object is skipped); none when absent."""
        if not self.metrics_path.is_file():
            return
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record

    def input_scale(self, hookpoint: str) -> float:
        """The scale the trainer multiplied the raw activations of `hookpoint` by."""
        try:
            return float(self.manifest["hookpoints"][hookpoint]["input_scale"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{self.manifest_path}: no input_scale for hookpoint {hookpoint!r}") from err

    def sae_config(self, sae_name: str, d_in: int) -> Any:  # SaeConfig
        """The run config's `[[sae]]` entry named `sae_name`."""
        found = [s for s in self.config.saes if s.resolved_name(d_in) == sae_name]
        if not found:
            raise CheckpointError(f"{self.manifest_path}: no [[sae]] named {sae_name!r} in the run's config")
        return found[0]

    def latent_frequency(self, hookpoint: str, sae_name: str, seed: int) -> np.ndarray | None:
        """Per-latent firing frequency (float64) of one SAE on the held-out set, None when not stored."""
        return load_latent_frequencies(self.path, hookpoint, sae_name, seed)

    def ground_truth(self) -> Any:  # GroundTruth | None
        """A synthetic run's true features, None for other runs."""
        from saeseeds.data.synthetic import GROUND_TRUTH_TENSORS, load_ground_truth

        return load_ground_truth(self.path) if (self.path / GROUND_TRUTH_TENSORS).is_file() else None

    # ------------------------------------------------------------------ the run's data, read back one way
    def check_data(self) -> None:
        """DataError in one line unless the run's data file is the one it was trained on (array sources)."""
        from saeseeds.data.sources import check_run_data

        check_run_data(self.config, self.manifest, self.path)

    def check_held_out(self) -> None:
        """CheckpointError in one line unless the stored held-out set is the one run.json records (counts, digest)."""
        from saeseeds.training.eval_store import eval_set_problem, stored_info

        if self._held_out_checked:  # hashing the stored rows costs about a second per GB: once per Run
            return
        info = stored_info(self.manifest)
        problem = eval_set_problem(self.path, info) if info is not None else None
        if problem:
            raise CheckpointError(f"{problem} (the run's stored evaluation set is not the one training wrote)")
        self._held_out_checked = True

    @property
    def held_out_info(self) -> dict[str, Any] | None:
        """run.json's description of the stored held-out set; None when the run stored none."""
        from saeseeds.training.eval_store import stored_info

        return stored_info(self.manifest)

    def stored_held_out(self) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Tensor]] | None:
        """The one reader of `<run>/eval/`: (run.json's description, activations, row tensors), checked against
        run.json; None for runs trained before the held-out set was stored."""
        from saeseeds.training.eval_store import read_eval_set, stored_info

        info = stored_info(self.manifest)
        if info is None:
            return None
        self.check_held_out()
        acts, rows = read_eval_set(self.path, info)
        return info, acts, rows

    def held_out(self, *, max_chunks: int = 0, progress: bool = False, check_data: bool = False) -> Any:  # EvalData
        """The held-out set as `EvalData`, read once: the stored rows (no LM), else, for a run that stored none, built
        again from its data (`eval_store.rebuild_held_out`: an LM run's held-out chunks run through the LM).
        `check_data`: check first that the run's data file is the one it was trained on (`check_data`: a consumer
        that reads training rows later fails here, before any work); a rebuild always checks."""
        from saeseeds.training.eval_store import read_held_out, rebuild_held_out

        info = self.held_out_info
        if check_data or info is None:
            self.check_data()
        if info is not None:
            self.check_held_out()
            return read_held_out(self.path, info, self.config, source=self.data.get("source", self.config.data.source),
                                 max_chunks=max_chunks)
        return rebuild_held_out(self.config, max_chunks=max_chunks, progress=progress)

    def held_out_batches(self) -> list[Any]:
        """The held-out batches (hookpoint → raw activations): the stored set, else rebuilt from the config."""
        from saeseeds.training.eval_store import split_batches

        stored = self.stored_held_out()
        if stored is None:
            return self.rebuild_source().eval
        _, acts, rows = stored
        return split_batches(acts, rows["batch_rows"])

    def held_out_rows(self, hookpoint: str) -> list[Tensor]:
        """The raw held-out activations of one hookpoint, batch by batch (`held_out_batches`)."""
        from saeseeds.data.types import as_mapping

        return [as_mapping(b, self.config.data.hookpoint)[hookpoint] for b in self.held_out_batches()]

    def check_same_data(self, info: Mapping[str, Any], *, hint: str = "") -> None:
        """DataError unless a rebuilt source's `info` describes the run's data: the same token fingerprint (LM),
        ground truth (synthetic), file digest, row count and width (arrays) as run.json (one check, every rebuild)."""
        recorded = self.data
        for key in DATA_KEYS:
            if recorded.get(key) and info.get(key) and recorded[key] != info[key]:
                where = f"{info['path']}: " if info.get("path") else ""
                raise DataError(f"{where}the run's data source no longer gives the data it was trained on ({key} "
                                f"{info[key]!r}, run.json records {recorded[key]!r}){hint}")

    def rebuild_source(self, *, min_tokens: int = 0) -> Any:  # SourcePair
        """The run's source built again from its config and checked against run.json: an LM source for one epoch
        (a consumer replays it), a synthetic one drawing at least `min_tokens`. An array file is checked before it
        is read (`check_data`), the rebuilt source's fingerprint after (`check_same_data`)."""
        from saeseeds.data.sources import build_source

        self.check_data()
        cfg = self.config
        if cfg.data.source == "lm":
            cfg = dataclasses.replace(cfg, lm=dataclasses.replace(cfg.lm, epochs=1))
        elif cfg.data.source == "synthetic":
            tokens = max(int(cfg.train.num_tokens), min_tokens)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_tokens=tokens))
        pair = build_source(cfg)
        self.check_same_data(pair.info)
        return pair

    def train_chunks(self, tokenizer: Any, *, hint: str = "") -> Any:  # TokenChunks
        """The LM run's corpus tokenised again exactly as in training, checked by its token fingerprint."""
        from saeseeds.data.corpus import build_token_chunks

        cfg = self.config
        chunks = build_token_chunks(cfg.lm, tokenizer, shuffle=cfg.data.shuffle, shuffle_seed=cfg.data.shuffle_seed)
        self.check_same_data({"token_fingerprint": chunks.fingerprint}, hint=hint)
        return chunks

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"
