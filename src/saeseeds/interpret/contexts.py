"""Text windows of a run's stored token rows and where each latent fires in them (docs/definitions.md,
"Interpretability").

The held-out chunks (`[n_chunks, ctx_len]` token ids, stored by the trainer) are cut into fixed windows of
`window` tokens that never cross a chunk (the last window of a chunk may be shorter). A latent's *activating*
windows are those where it fires on at least one token; its activation in a window is the maximum over the
window's tokens. Latent activations come from the SAE applied to the stored activation rows (no LM forward).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from saeseeds.analysis.eval_data import EvalData
from saeseeds.analysis.triggers import sparse_from_code, token_pieces
from saeseeds.errors import DataError
from saeseeds.interpret.interface import Context


@dataclass
class Corpus:
    """The token windows of one run's analysis rows: ids, readable pieces, and how common each window's tokens are."""

    chunks: np.ndarray
    """int64 [n_chunks, ctx_len]."""
    window: int
    special_ids: frozenset[int] = frozenset()
    decode: Callable[[list[int]], str] | None = None
    _pieces: dict[int, tuple[str, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.chunks.ndim != 2 or self.chunks.size == 0:
            raise DataError(f"token chunks: expected a non-empty [n_chunks, ctx_len] array, got {self.chunks.shape}")
        if self.window < 2:
            raise DataError(f"window: {self.window} tokens is too short (at least 2)")
        self.ctx_len = int(self.chunks.shape[1])
        self.per_chunk = math.ceil(self.ctx_len / self.window)
        self.commonness = self._commonness()

    @property
    def n_windows(self) -> int:
        return int(self.chunks.shape[0]) * self.per_chunk

    def window_of(self, positions: np.ndarray) -> np.ndarray:
        """Window id of each flat position of the `[n_chunks, ctx_len]` grid."""
        chunk, pos = np.divmod(positions, self.ctx_len)
        return chunk * self.per_chunk + pos // self.window

    def span(self, w: int) -> tuple[int, int, int]:
        """(chunk, start, end) of window `w`."""
        chunk, k = divmod(int(w), self.per_chunk)
        start = k * self.window
        return chunk, start, min(start + self.window, self.ctx_len)

    def ids(self, w: int) -> list[int]:
        chunk, start, end = self.span(w)
        return self.chunks[chunk, start:end].tolist()

    def pieces(self, w: int) -> tuple[str, ...]:
        """The text each token of window `w` adds when decoded (`#<id>` without a tokenizer); cached."""
        if w not in self._pieces:
            ids = self.ids(w)
            self._pieces[w] = (tuple(token_pieces(ids, self.decode)) if self.decode is not None
                               else tuple(f"#{i}" for i in ids))
        return self._pieces[w]

    def _commonness(self) -> np.ndarray:
        """Per window: mean log unigram frequency of its non-special tokens (NaN for a window of special tokens)."""
        flat = self.chunks.reshape(-1)
        keep = ~np.isin(flat, np.fromiter(self.special_ids, dtype=np.int64)) if self.special_ids else np.ones_like(
            flat, dtype=bool)
        counts = np.bincount(flat[keep], minlength=int(flat.max()) + 1).astype(np.float64)
        logf = np.log(np.maximum(counts, 1.0) / max(float(keep.sum()), 1.0))
        grid = np.where(keep, logf[flat], np.nan).reshape(self.chunks.shape)
        pad = self.per_chunk * self.window - self.ctx_len
        if pad:
            grid = np.concatenate([grid, np.full((grid.shape[0], pad), np.nan)], axis=1)
        windows = grid.reshape(-1, self.window)
        valid = np.isfinite(windows)
        total = np.where(valid, windows, 0.0).sum(axis=1)
        n = valid.sum(axis=1)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def context(self, w: int, positions: np.ndarray, values: np.ndarray) -> Context:
        """Window `w` as a Context: its pieces and the latent's activation at each token (given its firing
        `positions`, flat grid indices, and `values`)."""
        chunk, start, end = self.span(w)
        acts = [0.0] * (end - start)
        base = chunk * self.ctx_len + start
        for p, v in zip(positions.tolist(), values.tolist()):
            if base <= p < base + (end - start):
                acts[p - base] = float(v)
        return Context(self.pieces(w), tuple(acts))


def corpus_of(data: EvalData, window: int) -> Corpus:
    """The Corpus of an EvalData with token chunks (an LM run's stored held-out rows, plus asked-for training rows)."""
    if data.chunks is None:
        raise DataError("interpret needs the run's token ids, and this run stores none (not a language-model run)")
    tok = data.tokenizer
    decode = (lambda ids: tok.decode(ids)) if tok is not None else None
    return Corpus(np.asarray(data.chunks, dtype=np.int64), window, frozenset(int(i) for i in data.special_ids), decode)


@dataclass(frozen=True)
class LatentFiring:
    """Where each latent of one SAE fires on the analysis rows: positions and values, grouped by latent."""

    offsets: np.ndarray
    """int64 [num_latents + 1]: latent x's entries are [offsets[x], offsets[x + 1])."""
    positions: np.ndarray
    """int64 [nnz]: flat grid position of each firing."""
    values: np.ndarray
    """float32 [nnz]."""
    rows: int
    """Analysis rows seen (the denominator of the firing frequency)."""

    @property
    def num_latents(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def of(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[latent]), int(self.offsets[latent + 1])
        return self.positions[a:b], self.values[a:b]

    def frequency(self) -> np.ndarray:
        """Share of the analysis rows on which each latent fires."""
        return np.diff(self.offsets).astype(np.float64) / max(self.rows, 1)

    @classmethod
    def from_triplets(cls, latents: np.ndarray, positions: np.ndarray, values: np.ndarray, num_latents: int,
                      rows: int) -> LatentFiring:
        order = np.lexsort((positions, latents))
        counts = np.bincount(latents, minlength=num_latents)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(offsets, positions[order].astype(np.int64), values[order].astype(np.float32), rows)


@torch.no_grad()
def encode_firing(sae: object, data: EvalData, hookpoint: str) -> LatentFiring:
    """One encode of every analysis batch (the stored held-out rows, no LM forward): each latent's firings."""
    lat, pos, val, rows = [], [], [], 0
    for batch in data.batches:
        if batch.positions is None:
            raise DataError("interpret needs each activation row's token position; this run stores none")
        x = batch.acts[hookpoint].to(sae.device)  # type: ignore[attr-defined]
        sp = sparse_from_code(*sae.encode(x))  # type: ignore[attr-defined]
        keep = sp.values != 0  # firing: non-zero, as the firing frequency counts it
        lat.append(sp.latents[keep].cpu().numpy())
        pos.append(batch.positions.cpu()[sp.rows[keep].cpu()].numpy())
        val.append(sp.values[keep].cpu().numpy())
        rows += int(x.shape[0])
    return LatentFiring.from_triplets(_cat(lat, np.int64), _cat(pos, np.int64), _cat(val, np.float32),
                                      int(sae.num_latents), rows)  # type: ignore[attr-defined]


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def window_maxima(corpus: Corpus, positions: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(window ids, max activation in each) of the windows where a latent fires, strongest first (ties: lower id)."""
    if positions.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    w = corpus.window_of(positions)
    ids, inverse = np.unique(w, return_inverse=True)
    best = np.zeros(ids.shape[0])
    np.maximum.at(best, inverse, values.astype(np.float64))
    order = np.lexsort((ids, -best))
    return ids[order], best[order]


def zeroed(contexts: Sequence[Context]) -> list[Context]:
    """The contexts with their activations hidden (all 0): what a scorer is shown."""
    return [Context(c.tokens, (0.0,) * len(c.tokens)) for c in contexts]
