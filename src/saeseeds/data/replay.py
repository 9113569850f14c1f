"""Several passes over a finite activation stream, the later ones replayed from memory instead of recomputed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Replay(Generic[T]):
    """Yield `epochs` passes over `stream`: the first pass computes (e.g. runs the LM) and keeps each batch,
    later passes replay the kept batches in the same order, so every epoch is bitwise the same data.
    """

    def __init__(self, stream: Iterable[T], epochs: int) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        self.stream = stream
        self.epochs = epochs
        self._kept: list[T] | None = None

    def __iter__(self) -> Iterator[T]:
        if self.epochs == 1:
            yield from self.stream
            return
        if self._kept is None:
            kept: list[T] = []
            for batch in self.stream:
                kept.append(batch)
                yield batch
            self._kept = kept
            passes = self.epochs - 1
        else:
            passes = self.epochs
        for _ in range(passes):
            yield from self._kept
