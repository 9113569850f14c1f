"""Types shared by every activation source (batch shapes, the train/eval pair), kept apart from the dispatcher in
`sources.py` so the source modules can import them without importing the dispatcher back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from torch import Tensor

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
