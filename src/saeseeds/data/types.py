"""Types shared by every activation source (batch shapes, the train/eval pair, the held-out set with its token ids),
kept apart from the dispatcher in `sources.py` so the source modules can import them without importing it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor

from saeseeds.errors import DataError

Activations = Mapping[str, Tensor]
"""One forward's activations: hookpoint name → [tokens, d_in], every entry holding the same tokens."""

Batch = Tensor | Mapping[str, Tensor]
"""One step of activations: [batch, d_in] for one hookpoint, or hookpoint name → [batch, d_in] from one forward."""


class SourcePair(NamedTuple):
    """A training stream, a fixed held-out evaluation set, and a description that goes into run.json."""

    train: Iterable[Batch]
    eval: list[Batch]
    info: dict[str, Any]


def as_mapping(batch: Batch, default_hookpoint: str) -> dict[str, Tensor]:
    """Normalise a batch to hookpoint name → tensor."""
    if isinstance(batch, Tensor):
        return {default_hookpoint: batch}
    return dict(batch)


@dataclass
class EvalBatch:
    """One batch of held-out activations with, for LM runs, the token id and global position of each row."""

    acts: dict[str, Tensor]
    """hookpoint → [rows, d_in] float32."""
    token_ids: Tensor | None = None
    """int64 [rows]."""
    positions: Tensor | None = None
    """int64 [rows]: flat index into the eval chunk grid [n_chunks, ctx_len]."""


@dataclass
class EvalData:
    """Held-out evaluation batches of a run, plus what the LM-based analyses need (model, chunks, tokenizer)."""

    batches: list[EvalBatch]
    hookpoints: list[str]
    chunks: Tensor | None = None
    """int64 [n_chunks, ctx_len] held-out token chunks (LM runs)."""
    tokenizer: Any = None
    vocab_size: int = 0
    loaded: Any = None
    """saeseeds.data.lm_source.LoadedModel (LM runs)."""
    special_ids: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def has_tokens(self) -> bool:
        return self.chunks is not None

    def acts(self, hookpoint: str) -> list[Tensor]:
        """The activation batches of one hookpoint."""
        if hookpoint not in self.hookpoints:
            raise DataError(f"hookpoint {hookpoint!r} is not in the evaluation data ({', '.join(self.hookpoints)})")
        return [b.acts[hookpoint] for b in self.batches]
