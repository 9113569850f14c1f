"""Activation sources from arrays in memory or on disk (.npy, memory-mapped; safetensors)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from saeseeds.data.types import SourcePair
from saeseeds.errors import DataError
from saeseeds.hashing import sha256_hasher

if TYPE_CHECKING:
    from saeseeds.config import RunConfig


class ArraySource:
    """Rows of a 2-D array in one fixed order (a seeded permutation), served as [batch, d_in] float32 tensors.

    Re-iterable: every pass yields exactly the same batches, so every SAE of a run sees the same data.
    With `repeat`, the rows are served again in the same order, epoch after epoch, without end.
    """

    def __init__(
        self,
        rows: np.ndarray | Tensor,
        batch_size: int,
        *,
        order: np.ndarray | None = None,
        name: str = "array",
        repeat: bool = False,
    ) -> None:
        if rows.ndim != 2:
            raise DataError(f"{name}: activations must be 2-D [tokens, d_in], got shape {tuple(rows.shape)}")
        if rows.shape[0] == 0:
            raise DataError(f"{name}: no activation rows")
        if rows.shape[1] == 0:
            raise DataError(f"{name}: activations of shape {tuple(rows.shape)} have d_in 0; allowed: at least one column")
        self.rows = rows
        self.batch_size = batch_size
        self.order = order if order is not None else np.arange(rows.shape[0])
        self.name = name
        self.d_in = int(rows.shape[1])
        self.repeat = repeat

    def __iter__(self) -> Iterator[Tensor]:
        while True:
            for start in range(0, len(self.order), self.batch_size):
                idx = self.order[start : start + self.batch_size]
                chunk = self.rows[idx]
                batch = chunk if isinstance(chunk, Tensor) else torch.as_tensor(native(np.asarray(chunk)))
                yield check_batch(batch.to(torch.float32), self.name)
            if not self.repeat:
                return


def check_batch(batch: Tensor, name: str) -> Tensor:
    """Reject non-finite activations early, naming the source."""
    if not torch.isfinite(batch).all():
        bad = int((~torch.isfinite(batch)).any(-1).sum())
        raise DataError(f"{name}: {bad} activation row(s) contain NaN or inf")
    return batch


def native(array: np.ndarray) -> np.ndarray:
    """`array` in this machine's byte order (a big-endian `>f4` file is valid data; torch reads only native)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def check_dtype(path: Path | str, dtype: np.dtype | torch.dtype) -> None:
    """Activations are real numbers: float, integer or bool; complex, structured, text and object arrays are refused
    (a cast would silently drop an imaginary part or mix fields)."""
    if isinstance(dtype, torch.dtype):
        if dtype.is_complex:
            raise DataError(f"{path}: activations have dtype {dtype} (complex); allowed: real numbers (float, "
                            "integer or bool)")
        return
    if dtype.fields is not None or dtype.kind not in REAL_KINDS:
        what = "structured, with named fields" if dtype.fields is not None else _KIND_NAMES.get(dtype.kind, "not numeric")
        raise DataError(f"{path}: activations have dtype {dtype} ({what}); allowed: real numbers (float, integer or "
                        "bool), one column per dimension")


REAL_KINDS = "fiub"
"""numpy dtype kinds accepted as activations: float, signed and unsigned integer, bool."""
_KIND_NAMES = {"c": "complex", "U": "text", "S": "bytes", "O": "Python objects", "V": "raw bytes",
               "M": "dates", "m": "time spans"}


def load_array(path: Path, tensor_name: str = "") -> np.ndarray | Tensor:
    """Open a .npy file (memory-mapped) or read one tensor of a safetensors file; its dtype must be real numbers."""
    if path.is_dir():
        raise DataError(f"activation file {path} is a directory; data.path names one .npy or .safetensors file")
    if not path.is_file():
        raise DataError(f"activation file {path} does not exist")
    if path.suffix == ".npy":
        try:
            rows = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise DataError(f"{path} is not a readable .npy file: {err}") from err
        check_dtype(path, rows.dtype)
        return rows
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = list(fh.keys())
                if tensor_name and tensor_name not in keys:
                    raise DataError(f"{path} has no tensor {tensor_name!r}; it has {', '.join(keys)}")
                if not tensor_name and len(keys) != 1:
                    raise DataError(f"{path} holds {len(keys)} tensors ({', '.join(keys)}); set data.tensor to choose one")
                tensor = fh.get_tensor(tensor_name or keys[0])
                check_dtype(path, tensor.dtype)
                return tensor
        except SafetensorError as err:
            raise DataError(f"{path} is not a readable safetensors file: {err}") from err
    raise DataError(f"{path}: unsupported activation file type {path.suffix!r} (use .npy or .safetensors)")


def split_rows(num_rows: int, eval_fraction: float, shuffle: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One fixed order of row indices, split into training rows and held-out rows (the last `eval_fraction`)."""
    order = np.random.default_rng(seed).permutation(num_rows) if shuffle else np.arange(num_rows)
    n_eval = int(round(num_rows * eval_fraction))
    if eval_fraction > 0:
        n_eval = max(n_eval, 1)
    if n_eval >= num_rows:
        raise DataError(f"eval_fraction={eval_fraction} leaves no training rows out of {num_rows}")
    return order[: num_rows - n_eval], order[num_rows - n_eval :]


def build_array_source(cfg: RunConfig) -> SourcePair:
    """Training and held-out batches from `cfg.data.path` (.npy or .safetensors)."""
    path = Path(cfg.data.path)
    rows = load_array(path, cfg.data.tensor)
    if rows.ndim != 2:
        raise DataError(f"{path}: activations must be 2-D [tokens, d_in], got shape {tuple(rows.shape)}")
    train_idx, eval_idx = split_rows(rows.shape[0], cfg.data.eval_fraction, cfg.data.shuffle, cfg.data.shuffle_seed)
    bs = cfg.train.batch_size
    if len(train_idx) < bs:
        raise DataError(
            f"{path}: {len(train_idx)} training rows ({rows.shape[0]} minus {len(eval_idx)} held out by "
            f"data.eval_fraction) are fewer than one batch (train.batch_size = {bs}); "
            "use more data or a smaller batch"
        )
    train = ArraySource(rows, bs, order=train_idx, name=str(path), repeat=True)
    eval_batches = list(ArraySource(rows, bs, order=eval_idx, name=str(path))) if len(eval_idx) else []
    info = {"source": cfg.data.source, "path": str(path), "rows": int(rows.shape[0]), "d_in": int(rows.shape[1]),
            **file_identity(path)}
    return SourcePair(train, eval_batches, info)


_DIGESTS: dict[tuple[str, int, int], str] = {}
"""sha256 of data files by (resolved path, size, mtime_ns): each file is hashed at most once per process, and a
file whose size and mtime match a run's record takes the recorded digest without being read (`check_same_file`)."""


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), int(st.st_size), int(st.st_mtime_ns)


def file_identity(path: Path) -> dict[str, Any]:
    """What run.json records of an array file so later stages can tell it is unchanged: size, mtime and sha256.

    The digest is one sequential read of the file when a run starts (about 1 GB/s), small next to training, which
    reads every row; later stages compare size and mtime first and hash only when those differ."""
    key = _stat_key(path)
    if key not in _DIGESTS:
        digest = sha256_hasher()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return {"file_bytes": key[1], "file_mtime_ns": key[2], "file_sha256": _DIGESTS[key]}


def check_same_file(path: Path, recorded: Mapping[str, Any], where: str = "run.json") -> None:
    """DataError naming `path` unless it is the file `recorded` (run.json's data section) describes: same size,
    then the same mtime (trusted: no read) or else the same sha256 (hashed once). Records without a digest (runs
    from before it was kept) pass."""
    want = recorded.get("file_sha256")
    if not isinstance(want, str) or not want:
        return
    key = _stat_key(path)
    size = recorded.get("file_bytes")
    if isinstance(size, int) and key[1] != size:
        raise DataError(f"{path}: not the data file the run was trained on: {key[1]:,} bytes, {where} records "
                        f"{size:,}; restore the file it was trained on")
    if recorded.get("file_mtime_ns") == key[2]:
        _DIGESTS.setdefault(key, want)
    got = file_identity(path)["file_sha256"]
    if got != want:
        raise DataError(f"{path}: not the data file the run was trained on: sha256 {got[:16]}…, {where} records "
                        f"{want[:16]}… (same size, other contents); restore the file it was trained on")


def load_activation_batches(
    path: str | Path, *, batch_size: int = 4096, max_rows: int = 262_144
) -> list[Tensor]:
    """Held-out activations from a .npy or .safetensors file as float32 `[rows, d_in]` batches (≤ `max_rows`)."""
    rows = load_array(Path(path))
    if rows.ndim != 2:
        raise DataError(f"{path}: activations must be 2-D [tokens, d_in], got shape {tuple(rows.shape)}")
    rows = rows[:max_rows]
    out = []
    for start in range(0, rows.shape[0], batch_size):
        chunk = torch.as_tensor(np.array(rows[start : start + batch_size], dtype=np.float32))
        out.append(check_batch(chunk, f"{path}: rows {start}..{start + len(chunk)}"))
    if not out:
        raise DataError(f"{path}: holds no activation rows")
    return out
