"""On-disk activation cache: safetensors shards + a JSON manifest; resumable writes, hash-checked reads.

Shard i of a split holds the activations of a fixed run of LM forward batches (chunk range recorded in the
manifest), in the model's dtype, plus `batch_rows` (rows per forward batch). Reading yields exactly the
batches the live source yields (same rows, same split into batches, float32), so a run trained from the
cache has the same data fingerprint as one trained from the live model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from saeseeds.atomic import atomic_write_bytes, remove_stale_temps
from saeseeds.config import LmConfig
from saeseeds.data.lm_source import (
    LmActivationStream,
    lm_info,
    make_lm_streams,
    pack_output,
    prepare_lm,
)
from saeseeds.data.types import Activations, SourcePair
from saeseeds.distributed import World, current_world
from saeseeds.errors import DataError
from saeseeds.hashing import sha256_hex
from saeseeds.progress import tqdm
from saeseeds.records import STAMP_KEYS, record_schema, stamp, write_record

if TYPE_CHECKING:
    from saeseeds.config import RunConfig

MANIFEST = "manifest.json"
CACHE_SCHEMA = "saeseeds.cache/1"
CACHE_FORMAT = "saeseeds-activation-cache"
"""The shards' safetensors metadata `format`; manifests before `schema` said `"format": CACHE_FORMAT, "version": 1`."""
BATCH_ROWS = "__batch_rows__"
SPLITS = ("train", "eval")
# fields that must agree for a resumed job to continue an existing cache
RESUME_KEYS = ("model", "revision", "hookpoints", "hook_input", "token_fingerprint", "lm_batch_size",
               "batches_per_shard", "stored_dtype", "exclude_special_tokens")


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write the manifest."""
    write_record(directory / MANIFEST, CACHE_SCHEMA, manifest)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a cache directory; DataError when absent or not a saeseeds cache."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{directory}: not an activation cache (no {MANIFEST}); create one with `saeseeds cache`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg})") from err
    legacy = isinstance(manifest, dict) and manifest.get("format") == CACHE_FORMAT and manifest.get("version") == 1
    if record_schema(manifest) != CACHE_SCHEMA and not legacy:
        raise DataError(f"{path}: not a saeseeds activation cache manifest (schema {CACHE_SCHEMA})")
    return manifest


# --------------------------------------------------------------------------------------------
# writing


def _shard_plan(stream: LmActivationStream, split: str, batches_per_shard: int) -> list[dict[str, Any]]:
    """Shard entries: consecutive runs of `batches_per_shard` forward batches, with their chunk ranges."""
    bounds = stream.batch_bounds()
    shards = []
    for i, first in enumerate(range(0, len(bounds), batches_per_shard)):
        group = bounds[first : first + batches_per_shard]
        shards.append({
            "file": f"{split}-{i:05d}.safetensors",
            "chunk_start": group[0][0],
            "chunk_end": group[-1][1],
            "batches": len(group),
            "tokens": None,
            "sha256": None,
        })
    return shards


def _shard_is_valid(directory: Path, shard: Mapping[str, Any]) -> bool:
    """True when a completed shard's file is present and its sha256 matches the manifest."""
    path = directory / shard["file"]
    return bool(shard.get("sha256")) and path.is_file() and sha256_hex(path.read_bytes()) == shard["sha256"]


def _encode_shard(
    stream: LmActivationStream, shard: Mapping[str, Any], stored_dtype: torch.dtype
) -> tuple[bytes, int]:
    """Run the forward batches of one shard and serialise them (safetensors bytes, token count)."""
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in stream.hookpoints}
    rows: list[int] = []
    start = shard["chunk_start"]
    while start < shard["chunk_end"]:
        end = min(start + stream.batch_chunks, shard["chunk_end"])
        acts = stream.forward_batch(start, end)
        for name in stream.hookpoints:
            parts[name].append(acts[name].to("cpu", stored_dtype))
        rows.append(int(next(iter(acts.values())).shape[0]))
        start = end
    tensors = {name: torch.cat(chunks).contiguous() for name, chunks in parts.items()}
    tensors[BATCH_ROWS] = torch.tensor(rows, dtype=torch.int64)
    return save_safetensors(tensors, metadata={"format": CACHE_FORMAT}), sum(rows)


def _check_resumable(old: Mapping[str, Any], new: Mapping[str, Any], directory: Path) -> None:
    diffs = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    if diffs:
        raise DataError(
            f"{directory}: holds a cache made with different {', '.join(diffs)}; use another --out directory"
        )


def _check_cache_dir(directory: Path) -> None:
    """Refuse an --out that is a file, lies under a file, or holds files of something other than a cache."""
    from saeseeds.outputs import MARKER, check_creatable, output_kind

    check_creatable(directory)
    if not directory.is_dir() or not any(p.name != MARKER for p in directory.iterdir()):
        return
    if not (directory / MANIFEST).is_file():
        if output_kind(directory) == "cache":
            return  # a cache whose first manifest was never written
        raise DataError(
            f"--out {directory} is a non-empty directory without a cache {MANIFEST}; "
            "choose an empty or new directory (or an earlier cache to resume)"
        )
    read_manifest(directory)  # a readable saeseeds cache manifest, or a DataError naming it


def write_cache(
    cfg: RunConfig, out_dir: str | Path, *, batches_per_shard: int = 16, progress: bool = True
) -> dict[str, Any]:
    """Compute and store the activations of `cfg` (train and eval splits); resume an interrupted job.

    Completed shards whose hash verifies are skipped; a missing or corrupt one is recomputed.
    """
    if batches_per_shard <= 0:
        raise DataError(f"batches_per_shard must be positive, got {batches_per_shard}")
    directory = Path(out_dir)
    _check_cache_dir(directory)  # before the LM loads, and before anything is created
    loaded, chunks, hookpoints = prepare_lm(cfg)
    train, held_out = make_lm_streams(loaded, chunks, hookpoints, cfg.lm, progress=False)
    stored_dtype = loaded.dtype
    probe = train.forward_batch(0, 1)
    info = lm_info(loaded, chunks, hookpoints, cfg.lm, {h: int(a.shape[-1]) for h, a in probe.items()})
    manifest: dict[str, Any] = stamp(CACHE_SCHEMA, {
        **info,
        "source": "cache",
        "stored_dtype": str(stored_dtype).removeprefix("torch."),
        "batches_per_shard": batches_per_shard,
        "lm_config": _lm_dict(cfg.lm),
        "shuffle": cfg.data.shuffle,
        "shuffle_seed": cfg.data.shuffle_seed,
        "complete": False,
        "splits": {
            "train": {"shards": _shard_plan(train, "train", batches_per_shard)},
            "eval": {"shards": _shard_plan(held_out, "eval", batches_per_shard)},
        },
    })
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(directory)  # half-written shards of a killed job
    if (directory / MANIFEST).is_file():
        old = read_manifest(directory)
        _check_resumable(old, manifest, directory)
        for split in SPLITS:
            for new_shard, old_shard in zip(manifest["splits"][split]["shards"], old["splits"][split]["shards"]):
                if _shard_is_valid(directory, old_shard):
                    new_shard.update(tokens=old_shard["tokens"], sha256=old_shard["sha256"])
    write_manifest(directory, manifest)

    todo = [(s, shard) for s in SPLITS for shard in manifest["splits"][s]["shards"] if not shard["sha256"]]
    streams = {"train": train, "eval": held_out}
    for split, shard in tqdm(todo, desc="caching shards", disable=not progress):
        data, tokens = _encode_shard(streams[split], shard, stored_dtype)
        atomic_write_bytes(directory / shard["file"], data)
        shard.update(tokens=tokens, sha256=sha256_hex(data))
        write_manifest(directory, manifest)
    for split in SPLITS:
        manifest["splits"][split]["tokens"] = sum(s["tokens"] for s in manifest["splits"][split]["shards"])
    manifest["train_tokens"] = manifest["splits"]["train"]["tokens"]
    manifest["complete"] = True
    write_manifest(directory, manifest)
    return manifest


def _lm_dict(cfg: LmConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)


# --------------------------------------------------------------------------------------------
# reading


class CachedActivations:
    """Re-iterable stream of one split's cached batches (float32), hash-checked shard by shard."""

    def __init__(
        self, directory: Path, shards: Sequence[Mapping[str, Any]], hookpoints: Sequence[str],
        *, verify: bool = True, progress: bool = False, desc: str = "cache", shared: bool = False,
    ) -> None:
        self.directory, self.shards, self.hookpoints = directory, list(shards), list(hookpoints)
        self.verify, self.progress, self.desc = verify, progress, desc
        self.shared = shared
        """Under torchrun, split the shard reads over the ranks (the training stream; see `_load_shared`)."""

    def _load(self, shard: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        path = self.directory / shard["file"]
        if not path.is_file():
            raise DataError(f"{path}: cache shard missing; rerun `saeseeds cache` on {self.directory} to repair")
        data = path.read_bytes()
        if self.verify and sha256_hex(data) != shard["sha256"]:
            raise DataError(f"{path}: sha256 does not match the manifest (corrupt shard); rerun `saeseeds cache`")
        tensors = load_safetensors(data)
        missing = [h for h in self.hookpoints if h not in tensors]
        if missing:
            raise DataError(f"{path}: no activations for hookpoint(s) {', '.join(missing)}")
        return tensors

    def _load_shared(self, index: int, shard: Mapping[str, Any], world: World) -> dict[str, torch.Tensor]:
        """Under torchrun: shard `index` is read and hash-checked by rank `index % size` only, then broadcast,
        so each rank reads 1/size of the cache from disk; a bad shard ends every rank with the owner's message."""
        owner = index % world.size
        tensors: dict[str, torch.Tensor] | str | None = None
        if world.rank == owner:
            try:
                tensors = self._load(shard)
            except DataError as err:
                tensors = str(err)
        tensors = world.broadcast_object(tensors, src=owner)
        if isinstance(tensors, str):
            raise DataError(tensors)
        return tensors

    def iter_dicts(self) -> Iterator[dict[str, torch.Tensor]]:
        """Cached forward batches as hookpoint → [tokens, d] float32 dicts."""
        world = current_world() if self.shared else World()
        for index, shard in enumerate(tqdm(self.shards, desc=self.desc, disable=not self.progress, leave=False)):
            tensors = self._load_shared(index, shard, world) if world.active else self._load(shard)
            rows = tensors[BATCH_ROWS].tolist()
            split = {h: tensors[h].split(rows) for h in self.hookpoints}
            for i in range(len(rows)):
                yield {h: split[h][i].float() for h in self.hookpoints}

    def __iter__(self) -> Iterator[Activations]:
        for acts in self.iter_dicts():
            yield pack_output(acts)


def open_cache(
    directory: str | Path, hookpoints: Sequence[str] = (), *, verify: bool = True, progress: bool = False
) -> tuple[CachedActivations, CachedActivations, dict[str, Any]]:
    """Train and eval streams of a complete cache, optionally restricted to some of its hookpoints."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if not manifest.get("complete"):
        raise DataError(f"{directory}: the cache is incomplete; rerun `saeseeds cache` with --out {directory} to finish it")
    available = manifest["hookpoints"]
    chosen = list(hookpoints) or list(available)
    unknown = [h for h in chosen if h not in available]
    if unknown:
        raise DataError(f"{directory}: cache has no hookpoint(s) {', '.join(unknown)}; it has {', '.join(available)}")
    train = CachedActivations(directory, manifest["splits"]["train"]["shards"], chosen,
                              verify=verify, progress=progress, desc="cache (train)", shared=True)
    held_out = CachedActivations(directory, manifest["splits"]["eval"]["shards"], chosen, verify=verify)
    return train, held_out, manifest


def build_cache_source(cfg: RunConfig) -> SourcePair:
    """SourcePair reading `cfg.data.path` (a cache directory); `lm.hookpoints`, if set, picks a subset."""
    if not cfg.data.path:
        raise DataError("data.path: name the cache directory (made by `saeseeds cache`)")
    train, held_out, manifest = open_cache(
        cfg.data.path, cfg.lm.hookpoints, progress=cfg.train.progress
    )
    skip = {"format", "version", "splits", "complete", *STAMP_KEYS}
    info = {k: v for k, v in manifest.items() if k not in skip}
    info.update(
        source="cache",
        cache_path=str(Path(cfg.data.path).resolve()),
        hookpoints=train.hookpoints,
        d_in={h: manifest["d_in"][h] for h in train.hookpoints},
        output="mapping",
        shard_sha256=[s["sha256"] for s in manifest["splits"]["train"]["shards"]],
    )
    return SourcePair(train, list(held_out), info)
