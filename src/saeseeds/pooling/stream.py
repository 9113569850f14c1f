"""The run's training stream, rebuilt from its config, for as many tokens as pooling needs: `[batch_size, d_in]`
batches of one hookpoint, in training order, the run's own batches first.

An LM source is run once (one pass over the corpus, kept in memory) and replayed, as `lm.epochs` does in
training; a synthetic source draws the same batches and then continues its generator; other sources are
re-read from the start when they run out. The source is rebuilt by `Run.rebuild_source`, which checks that it
describes the run's data (an LM source's token fingerprint, a synthetic source's ground-truth digest and an array
file's digest and shape must equal the ones in run.json).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from torch import Tensor

from saeseeds.data.batching import rebatch
from saeseeds.data.types import as_mapping
from saeseeds.errors import DataError
from saeseeds.training.run_dir import Run


class RunStream:
    """Re-iterable: `batches(tokens)` yields `tokens // batch_size` batches of raw activations at `hookpoint`."""

    def __init__(self, run: Run, hookpoint: str, *, train_stream: Iterable[Any] | None = None,
                 max_tokens: int = 0) -> None:
        self.run = run
        self.cfg = cfg = run.config
        self.hookpoint = hookpoint
        self.batch_size = int(cfg.train.batch_size)
        self._given = train_stream
        self._max_tokens = max_tokens
        self._source: Iterable[Any] | None = None
        self._kept: list[Any] = []  # LM: one pass over the corpus, kept as it is computed
        self._live: Iterator[Any] | None = None
        self._live_done = False
        self._cache_lm = cfg.data.source == "lm" and train_stream is None

    def _raw(self) -> Iterable[Any]:
        if self._given is not None:
            return self._given
        if self._source is None:
            self._source = self.run.rebuild_source(min_tokens=self._max_tokens).train
        return self._source

    def _passes(self) -> Iterator[Any]:
        """Raw batches: pass after pass over the source. An LM pass is computed once and kept, batch by batch,
        so a consumer that stops early leaves what it computed for the next one."""
        if self._cache_lm:
            i = 0
            while True:
                if i < len(self._kept):
                    i += 1
                    yield self._kept[i - 1]
                    continue
                if self._live_done:
                    if not self._kept:
                        raise DataError("the run's training stream is empty")
                    i = 0
                    continue
                if self._live is None:
                    self._live = iter(self._raw())
                try:
                    batch = next(self._live)
                except StopIteration:
                    self._live_done = True
                    continue
                self._kept.append({k: v for k, v in as_mapping(batch, self.cfg.data.hookpoint).items()
                                   if k == self.hookpoint})
        while True:
            empty = True
            for batch in self._raw():
                empty = False
                yield batch
            if empty:
                raise DataError("the run's training stream is empty")

    def batches(self, tokens: int) -> Iterator[Tensor]:
        """The first `tokens // batch_size` batches of the stream (raw activations of the hookpoint)."""
        steps = tokens // self.batch_size
        if steps <= 0:
            return
        for i, batch in enumerate(rebatch(self._passes(), self.batch_size, self.cfg.data.hookpoint)):
            yield _pick(batch, self.hookpoint)
            if i + 1 >= steps:
                return


def _pick(batch: Mapping[str, Tensor], hookpoint: str) -> Tensor:
    if hookpoint not in batch:
        raise DataError(f"the run's training stream has no hookpoint {hookpoint!r} (it has {sorted(batch)})")
    return batch[hookpoint]
