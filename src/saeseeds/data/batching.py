"""Re-cut a stream of activation batches of any size into batches of exactly `batch_size` rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from saeseeds.data.types import Batch, as_mapping
from saeseeds.errors import DataError


def rebatch(stream: Iterable[Batch], batch_size: int, default_hookpoint: str) -> Iterator[dict[str, Tensor]]:
    """Yield hookpoint → [batch_size, d_in] batches; a trailing partial batch is dropped.

    Every hookpoint of an input batch must have the same number of rows (the same tokens).
    """
    pending: dict[str, list[Tensor]] = {}
    pending_rows = 0
    keys: tuple[str, ...] | None = None
    widths: dict[str, int] = {}
    for i, raw in enumerate(stream):
        batch = as_mapping(raw, default_hookpoint)
        if keys is None:
            keys = tuple(batch)
            pending = {k: [] for k in keys}
        elif tuple(batch) != keys:
            raise DataError(f"batch {i} has hookpoints {sorted(batch)}, earlier batches had {sorted(keys)}")
        rows = {int(t.shape[0]) for t in batch.values()}
        if len(rows) != 1:
            raise DataError(f"batch {i}: hookpoints disagree on the number of rows: {rows}")
        for k, t in batch.items():
            if t.ndim != 2:
                raise DataError(f"batch {i}, hookpoint {k}: expected [tokens, d_in], got shape {tuple(t.shape)}")
            if widths.setdefault(k, int(t.shape[1])) != t.shape[1]:
                raise DataError(
                    f"batch {i}, hookpoint {k}: d_in changed from {widths[k]} to {t.shape[1]} (shape {tuple(t.shape)})"
                )
            pending[k].append(t)
        pending_rows += rows.pop()
        while pending_rows >= batch_size:
            joined = {k: torch.cat(v) if len(v) > 1 else v[0] for k, v in pending.items()}
            yield {k: t[:batch_size] for k, t in joined.items()}
            pending = {k: [t[batch_size:]] for k, t in joined.items()}
            pending_rows -= batch_size
