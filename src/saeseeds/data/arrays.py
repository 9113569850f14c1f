"""Activation sources from arrays in memory or on disk (.npy, memory-mapped; safetensors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from saeseeds.data.types import SourcePair
from saeseeds.errors import DataError

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
                batch = torch.as_tensor(np.asarray(chunk)) if not isinstance(chunk, Tensor) else chunk
                yield check_batch(batch.to(torch.float32), self.name)
            if not self.repeat:
                return


def check_batch(batch: Tensor, name: str) -> Tensor:
    """Reject non-finite activations early, naming the source."""
    if not torch.isfinite(batch).all():
        bad = int((~torch.isfinite(batch)).any(-1).sum())
        raise DataError(f"{name}: {bad} activation row(s) contain NaN or inf")
    return batch


def load_array(path: Path, tensor_name: str = "") -> np.ndarray | Tensor:
    """Open a .npy file (memory-mapped) or read one tensor of a safetensors file."""
    if not path.is_file():
        raise DataError(f"activation file {path} does not exist")
    if path.suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise DataError(f"{path} is not a readable .npy file: {err}") from err
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = list(fh.keys())
                if tensor_name:
                    if tensor_name not in keys:
                        raise DataError(f"{path} has no tensor {tensor_name!r}; it has {', '.join(keys)}")
                    return fh.get_tensor(tensor_name)
                if len(keys) != 1:
                    raise DataError(f"{path} holds {len(keys)} tensors ({', '.join(keys)}); set data.tensor to choose one")
                return fh.get_tensor(keys[0])
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
    info = {"source": cfg.data.source, "path": str(path), "rows": int(rows.shape[0]), "d_in": int(rows.shape[1])}
    return SourcePair(train, eval_batches, info)


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
