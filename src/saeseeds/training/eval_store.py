"""The run's held-out set and per-latent statistics, stored in `<run>/eval/` so later stages never re-run the LM.

Layout (every file written atomically; run.json's `eval` section says what is there):

    eval/acts/<hookpoint>.safetensors   "acts": float32 [rows, d_in], raw (unscaled) held-out activations
    eval/rows.safetensors               "batch_rows": int64 [n_batches], rows of each eval batch, and for LM
                                        sources "token_ids" int64 [rows], "positions" int64 [rows] (flat
                                        index into the chunk grid), "chunks" int64 [n_chunks, ctx_len],
                                        "special_ids" int64 [n] (token ids that have no row)
    eval/latents.safetensors            "<hookpoint>/<name>/seed<N>": float64 [num_latents], share of the
                                        eval tokens on which the latent is non-zero (rewritten at each eval)

At most `train.store_eval_tokens` rows are kept: for LM sources whole chunks (so every kept chunk has all of
its rows), otherwise the first rows. Rows are in eval-stream order, identical to `rebuild_held_out`'s.
`read_held_out` turns them back into `EvalData` (what `Run.held_out` gives); `rebuild_held_out` builds it again
for runs that stored none (an LM run: one model forward per batch of held-out chunks). The latent frequencies are
read back by the run (`run_dir.read_latent_frequencies`, onto each `SeedSet`), with its checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from saeseeds.atomic import atomic_write
from saeseeds.data.types import EvalBatch, EvalData, as_mapping
from saeseeds.errors import CheckpointError, DataError
from saeseeds.hashing import sha256_hasher, tensor_bytes
from saeseeds.run_layout import EVAL_DIR, LATENT_FREQUENCIES
from saeseeds.training.diskspace import disk_full_guard, nbytes

ROWS_FILE = "rows.safetensors"


def acts_file(hookpoint: str) -> str:
    """Path of a hookpoint's stored activations, relative to the run directory."""
    return f"{EVAL_DIR}/acts/{hookpoint}.safetensors"


def _save(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (a full disk: one DiskFullError line naming it)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with disk_full_guard(path, nbytes(tensors)):
        atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def _chunk_cut(eval_batches: Sequence[Any], cap: int, ctx_len: int) -> int:
    """Number of leading held-out chunks whose rows all fit in `cap`."""
    positions = torch.cat([b.positions for b in eval_batches])
    n_chunks = sum(int(b.chunks.shape[0]) for b in eval_batches)
    per_chunk = torch.bincount(positions // ctx_len, minlength=n_chunks)
    fits = torch.cumsum(per_chunk, 0) <= cap
    return int(fits.sum())


def store_eval_set(
    run_dir: Path, eval_batches: Sequence[Any], mappings: Sequence[Mapping[str, Tensor]], cap: int, special: Sequence[int]
) -> dict[str, Any] | None:
    """Write up to `cap` held-out rows (and their tokens when the batches carry them); what run.json records."""
    if cap <= 0 or not mappings:
        return None
    hookpoints = list(mappings[0])
    batch_rows = torch.tensor([int(next(iter(m.values())).shape[0]) for m in mappings], dtype=torch.int64)
    total = int(batch_rows.sum())
    has_tokens = all(hasattr(b, "token_ids") for b in eval_batches)
    rows_tensors: dict[str, Tensor] = {}
    if has_tokens:
        ctx_len = int(eval_batches[0].chunks.shape[1])
        n_chunks = _chunk_cut(eval_batches, cap, ctx_len)
        positions = torch.cat([b.positions for b in eval_batches])
        keep = int((positions < n_chunks * ctx_len).sum())  # rows are in grid order: a prefix
        chunks = torch.cat([b.chunks for b in eval_batches])[:n_chunks]
        rows_tensors |= {
            "token_ids": torch.cat([b.token_ids for b in eval_batches])[:keep],
            "positions": positions[:keep],
            "chunks": chunks,
            "special_ids": torch.tensor(list(special), dtype=torch.int64),
        }
    else:
        keep = min(cap, total)
    rows_tensors["batch_rows"] = _cut_rows(batch_rows, keep)
    digest = sha256_hasher()
    for hookpoint in hookpoints:
        acts = torch.cat([m[hookpoint] for m in mappings])[:keep].float()
        digest.update(tensor_bytes(acts))  # as acts_digest reads it back
        _save(run_dir / acts_file(hookpoint), {"acts": acts})
    _save(run_dir / EVAL_DIR / ROWS_FILE, rows_tensors)
    return {
        "rows": keep,
        "total_rows": total,
        "complete": keep == total,
        "cap": cap,
        "chunks": int(rows_tensors["chunks"].shape[0]) if has_tokens else None,
        "has_tokens": has_tokens,
        "acts": {h: acts_file(h) for h in hookpoints},
        "rows_file": f"{EVAL_DIR}/{ROWS_FILE}",
        "sha256_acts": digest.hexdigest(),
    }


def acts_digest(acts: Mapping[str, Tensor]) -> str:
    """`sha256_acts` of run.json: the stored activations' bytes, hookpoint after hookpoint in stored order."""
    digest = sha256_hasher()
    for tensor in acts.values():
        digest.update(tensor_bytes(tensor.float()))
    return digest.hexdigest()


def eval_set_problem(run_dir: Path, info: Mapping[str, Any]) -> str | None:
    """What is wrong with the stored held-out set that run.json's `eval.stored` describes (a file missing,
    unreadable, of another row count, or activations whose SHA-256 differs from `sha256_acts`); None when whole."""
    try:
        acts, rows = read_eval_set(run_dir, info)
        expected = int(info["rows"])
        for hookpoint, tensor in acts.items():
            if tensor.ndim != 2 or tensor.shape[0] != expected:
                return (f"{run_dir / info['acts'][hookpoint]} holds a tensor of shape {tuple(tensor.shape)} where "
                        f"{expected} rows were stored")
        if int(rows["batch_rows"].sum()) != expected:
            return f"{run_dir / info['rows_file']} counts {int(rows['batch_rows'].sum())} rows where {expected} were stored"
        if info.get("sha256_acts") and acts_digest(acts) != info["sha256_acts"]:
            return f"{run_dir / EVAL_DIR / 'acts'}: the activations' SHA-256 differs from run.json's sha256_acts"
    except CheckpointError as err:
        return str(err)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return f"{run_dir / EVAL_DIR}: the stored held-out set does not match run.json ({type(err).__name__}: {err})"
    return None


def _cut_rows(batch_rows: Tensor, keep: int) -> Tensor:
    """Batch sizes after keeping only the first `keep` rows (empty batches dropped)."""
    ends = torch.cumsum(batch_rows, 0)
    starts = ends - batch_rows
    kept = torch.clamp(torch.minimum(ends, torch.tensor(keep)) - starts, min=0)
    return kept[kept > 0]


def read_eval_set(run_dir: Path, info: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The stored activations (hookpoint → [rows, d_in]) and rows file tensors; CheckpointError when unreadable."""
    acts = {h: _load(run_dir / rel)["acts"] for h, rel in info["acts"].items()}
    return acts, _load(run_dir / info["rows_file"])


def read_eval_rows(run_dir: Path, info: Mapping[str, Any]) -> dict[str, Tensor]:
    """The stored rows file alone (token chunks, special ids, row positions): no activations read."""
    return _load(Path(run_dir) / info["rows_file"])


def _load(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (the run's stored evaluation set)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


def write_latent_frequencies(run_dir: Path, frequencies: Mapping[str, Tensor], *, step: int, tokens: int) -> str:
    """Write every member's per-latent firing frequency (float64) in one file; its path relative to the run."""
    tensors = {key: f.double() for key, f in frequencies.items()}
    _save(run_dir / LATENT_FREQUENCIES, tensors, {"step": str(step), "tokens": str(tokens)})
    return LATENT_FREQUENCIES


def stored_info(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """run.json's description of the stored held-out set, or None for runs without one (older runs)."""
    section = manifest.get("eval")
    stored = section.get("stored") if isinstance(section, dict) else None
    return stored if isinstance(stored, dict) and stored.get("rows") else None


def split_batches(acts: Mapping[str, Tensor], batch_rows: Tensor) -> list[dict[str, Tensor]]:
    """The stored rows (hookpoint → [rows, d_in]) cut back into the eval batches they were stored from
    (`batch_rows`: the rows of each batch, as rows.safetensors records them)."""
    sizes = [int(n) for n in batch_rows]
    split = {h: a.split(sizes) for h, a in acts.items()}
    return [{h: parts[i] for h, parts in split.items()} for i in range(len(sizes))]


def read_stored_batches(run_dir: Path, manifest: Mapping[str, Any]) -> list[dict[str, Tensor]] | None:
    """The stored held-out rows as the run's eval batches (hookpoint → [rows, d_in]), or None if none stored."""
    info = stored_info(manifest)
    if info is None:
        return None
    acts, rows = read_eval_set(run_dir, info)
    return split_batches(acts, rows["batch_rows"])


def read_held_out(run_dir: Path, info: Mapping[str, Any], cfg: Any, *, source: str, max_chunks: int = 0) -> EvalData:
    """The stored held-out set as `EvalData` (no tokenizer or model: `analysis.eval_data.with_model` adds them);
    an LM run's rows keep their token ids and positions, in batches of `lm.lm_batch_size` chunks as in training.
    `max_chunks` > 0 keeps the first chunks only."""
    acts, rows = read_eval_set(run_dir, info)
    hookpoints = list(acts)
    meta = {"source": source, "stored": dict(info)}
    if "chunks" not in rows:
        return EvalData([EvalBatch(b) for b in split_batches(acts, rows["batch_rows"])], hookpoints, info=meta)
    chunks, positions, token_ids = rows["chunks"], rows["positions"], rows["token_ids"]
    if max_chunks > 0:
        chunks = chunks[:max_chunks]
    ctx_len = int(chunks.shape[1]) if chunks.ndim == 2 else 0
    if chunks.numel() == 0:
        raise DataError(f"{run_dir}: the stored held-out set has no token chunks")
    keep = positions < chunks.shape[0] * ctx_len
    # the same batches as `rebuild_held_out`: one per `lm.lm_batch_size` chunks
    group = torch.div(positions[keep], ctx_len * max(cfg.lm.lm_batch_size, 1), rounding_mode="floor")
    counts = torch.bincount(group).tolist() if group.numel() else []
    parts = {h: a[keep].split(counts) for h, a in acts.items()}
    ids, pos = token_ids[keep].split(counts), positions[keep].split(counts)
    batches = [EvalBatch({h: parts[h][i] for h in hookpoints}, ids[i], pos[i]) for i in range(len(counts)) if counts[i]]
    special = tuple(int(t) for t in rows["special_ids"])
    return EvalData(batches, hookpoints, chunks, None, int(chunks.max()) + 1, None, special, meta)


def rebuild_held_out(cfg: Any, *, max_chunks: int = 0, progress: bool = False) -> EvalData:
    """The held-out set built again from a run config (`RunConfig`) when none was stored: an LM run's held-out
    chunks through the LM (`lm_source.rebuild_lm_held_out`: token ids and positions kept, the model attached),
    another source's eval batches. `max_chunks` > 0 caps the LM chunks."""
    if cfg.data.source == "lm":
        from saeseeds.data.lm_source import rebuild_lm_held_out

        return rebuild_lm_held_out(cfg, max_chunks=max_chunks, progress=progress)
    from saeseeds.data.sources import build_source

    pair = build_source(cfg)
    batches = [EvalBatch(as_mapping(b, cfg.data.hookpoint)) for b in pair.eval]
    if not batches:
        raise DataError("the run's data source has no evaluation batches")
    return EvalData(batches, list(batches[0].acts), info=dict(pair.info))
