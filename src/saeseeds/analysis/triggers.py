"""Latent triggers: top-activating contexts and how concentrated each latent's activation is on token ids.

Everything streams over batches with memory bounded by `num_latents × n_top` (top contexts) and by the
number of distinct (latent, token id) pairs that ever fire (trigger mass, held as a sparse COO list),
never by `num_latents × vocab_size`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from saeseeds.errors import DataError


@dataclass(frozen=True)
class SparseActivations:
    """The non-zero latent activations of a batch of tokens, as COO triplets (row, latent, value)."""

    rows: Tensor
    """int64 [nnz]: token row within the batch."""
    latents: Tensor
    """int64 [nnz]: latent index."""
    values: Tensor
    """float [nnz]: activation value (non-zero)."""
    batch_size: int


def sparse_from_code(values: Tensor, indices: Tensor) -> SparseActivations:
    """COO triplets from a sparse code (`values [B, m]`, `indices [B, m]`, padding entries have value 0)."""
    if values.shape != indices.shape or values.ndim != 2:
        raise DataError(
            f"latent code: values {tuple(values.shape)} and indices {tuple(indices.shape)} must be equal [B, m]"
        )
    batch = values.shape[0]
    rows = torch.arange(batch, device=values.device).unsqueeze(1).expand_as(values)
    keep = values != 0
    return SparseActivations(rows[keep], indices[keep].long(), values[keep].float(), batch)


def sparse_from_dense(acts: Tensor) -> SparseActivations:
    """COO triplets from dense latent activations `[B, num_latents]`."""
    if acts.ndim != 2:
        raise DataError(f"latent activations: expected [B, num_latents], got {tuple(acts.shape)}")
    rows, latents = acts.nonzero(as_tuple=True)
    return SparseActivations(rows, latents, acts[rows, latents].float(), acts.shape[0])


# --------------------------------------------------------------------------------------------
# top-activating contexts


class TopActivations:
    """Per-latent top-`n_top` activations over a stream, with the global token position of each.

    Positions are global token positions: with token chunks `[n_chunks, ctx_len]` flattened in order,
    a position maps back to `(chunk, pos) = divmod(position, ctx_len)`. By default rows are numbered
    consecutively across batches; pass explicit positions when some tokens have no activation row.
    """

    def __init__(self, num_latents: int, n_top: int = 20, device: torch.device | str = "cpu") -> None:
        if num_latents <= 0 or n_top <= 0:
            raise DataError(f"TopActivations: num_latents={num_latents} and n_top={n_top} must be positive")
        self.num_latents = num_latents
        self.n_top = n_top
        self.values = torch.full((num_latents, n_top), -math.inf, device=device)
        self.positions = torch.full((num_latents, n_top), -1, dtype=torch.long, device=device)
        self.tokens_seen = 0

    def update(self, batch: SparseActivations, positions: Tensor | None = None) -> None:
        """Merge one batch: keep each latent's best `n_top` over everything seen (torch.topk merge).

        `positions [B]` gives each row's global token position explicitly (e.g. when special-token
        positions were dropped from the activations); by default rows continue the running count.
        """
        n = self.n_top
        if positions is None:
            positions = torch.arange(batch.batch_size) + self.tokens_seen
        elif positions.numel() != batch.batch_size:
            raise DataError(f"positions: {positions.numel()} for a batch of {batch.batch_size} rows")
        positions = positions.reshape(-1).long()
        if batch.values.numel():
            _check_latents(batch.latents, self.num_latents)
            # Sort by value (descending), then stably by latent: each latent's entries become a
            # contiguous run in descending order, and its first n entries are its batch top-n.
            order = torch.argsort(batch.values, descending=True, stable=True)
            latents = batch.latents[order]
            order = order[torch.argsort(latents, stable=True)]
            latents, values = batch.latents[order], batch.values[order]
            pos = positions.to(batch.rows.device)[batch.rows[order].long()]
            counts = torch.bincount(latents, minlength=self.num_latents)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(latents.numel(), device=latents.device) - starts[latents]
            keep = rank < n
            cand_v = torch.full_like(self.values, -math.inf)
            cand_p = torch.full_like(self.positions, -1)
            cand_v[latents[keep], rank[keep]] = values[keep].to(cand_v.device)
            cand_p[latents[keep], rank[keep]] = pos[keep].to(cand_p.device)
            merged_v = torch.cat([self.values, cand_v], dim=1)
            merged_p = torch.cat([self.positions, cand_p], dim=1)
            self.values, idx = torch.topk(merged_v, n, dim=1)
            self.positions = torch.gather(merged_p, 1, idx)
        self.tokens_seen += batch.batch_size

    def top(self, latent: int) -> tuple[Tensor, Tensor]:
        """(values, positions) of one latent's top activations, best first, without empty slots."""
        keep = self.positions[latent] >= 0
        return self.values[latent][keep], self.positions[latent][keep]


@dataclass(frozen=True)
class ContextExample:
    """One top-activating context of a latent: a token window with the activating token marked."""

    latent: int
    activation: float
    chunk: int
    position: int
    tokens: list[str]
    """Decoded tokens of the window, one string per token."""
    marked: int
    """Index within `tokens` of the activating token."""
    token_id: int


def top_contexts(
    top: TopActivations,
    latents: Sequence[int],
    token_ids: Tensor,
    decode: Callable[[list[int]], str],
    *,
    window_before: int = 12,
    window_after: int = 4,
) -> dict[int, list[ContextExample]]:
    """Token windows around each requested latent's top activations (`token_ids [n_chunks, ctx_len]`).

    `decode(ids) -> str` turns ids into text (e.g. a tokenizer's `decode`); each token's text is what it
    adds to the decoded window (so word pieces join and spaces stay where the tokenizer puts them).
    Windows never cross a chunk boundary, because chunks are independent model inputs.
    """
    if token_ids.ndim != 2:
        raise DataError(f"token ids: expected [n_chunks, ctx_len], got {tuple(token_ids.shape)}")
    n_chunks, ctx_len = token_ids.shape
    if top.tokens_seen > n_chunks * ctx_len or int(top.positions.max()) >= n_chunks * ctx_len:
        raise DataError(
            f"token ids [{n_chunks}, {ctx_len}] cover {n_chunks * ctx_len} tokens but "
            f"{top.tokens_seen} activation rows were seen; they must be aligned"
        )
    out: dict[int, list[ContextExample]] = {}
    for latent in latents:
        values, positions = top.top(int(latent))
        examples = []
        for value, position in zip(values.tolist(), positions.tolist()):
            chunk, pos = divmod(int(position), ctx_len)
            lo, hi = max(0, pos - window_before), min(ctx_len, pos + window_after + 1)
            ids = token_ids[chunk, lo:hi].tolist()
            examples.append(
                ContextExample(
                    latent=int(latent),
                    activation=float(value),
                    chunk=chunk,
                    position=pos,
                    tokens=token_pieces(ids, decode),
                    marked=pos - lo,
                    token_id=int(token_ids[chunk, pos]),
                )
            )
        out[int(latent)] = examples
    return out


def token_pieces(ids: Sequence[int], decode: Callable[[list[int]], str]) -> list[str]:
    """The text each token adds when `ids` are decoded left to right (incremental detokenisation).

    Falls back to decoding a token alone where the running text is not an extension of the previous one.
    """
    pieces, previous = [], ""
    for j in range(len(ids)):
        current = decode(list(ids[: j + 1]))
        pieces.append(current[len(previous):] if current.startswith(previous) else decode([ids[j]]))
        previous = current
    return pieces


# --------------------------------------------------------------------------------------------
# trigger statistics


class TriggerAccumulator:
    """Streams per-latent activation mass over token ids, firing counts and activation sums.

    Mass is accumulated sparsely: a key `latent * vocab_size + token_id` per non-zero activation,
    summed with `torch.unique` per batch and re-coalesced whenever the pending list grows past
    `coalesce_every` entries, so memory follows the distinct (latent, token) pairs that fire.
    """

    def __init__(self, num_latents: int, vocab_size: int, *, coalesce_every: int = 4_000_000) -> None:
        if num_latents <= 0 or vocab_size <= 0:
            raise DataError(
                f"TriggerAccumulator: num_latents={num_latents} and vocab_size={vocab_size} must be positive"
            )
        self.num_latents = num_latents
        self.vocab_size = vocab_size
        self.coalesce_every = coalesce_every
        self.fire_count = torch.zeros(num_latents, dtype=torch.long)
        self.act_sum = torch.zeros(num_latents, dtype=torch.float64)
        self.tokens_seen = 0
        self._keys: list[Tensor] = [torch.zeros(0, dtype=torch.long)]
        self._mass: list[Tensor] = [torch.zeros(0, dtype=torch.float64)]
        self._pending = 0

    def update(self, batch: SparseActivations, token_ids: Tensor) -> None:
        """Add one batch; `token_ids [B]` are the token ids of the batch's rows."""
        token_ids = token_ids.reshape(-1).long().cpu()
        if token_ids.numel() != batch.batch_size:
            raise DataError(
                f"token ids: {token_ids.numel()} ids for a batch of {batch.batch_size} activation rows"
            )
        if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= self.vocab_size):
            raise DataError(f"token ids: values must lie in [0, {self.vocab_size}), the vocabulary size")
        self.tokens_seen += batch.batch_size
        if not batch.values.numel():
            return
        latents = batch.latents.long().cpu()
        _check_latents(latents, self.num_latents)
        values = batch.values.double().cpu()
        self.fire_count += torch.bincount(latents, minlength=self.num_latents)
        self.act_sum.index_add_(0, latents, values)
        keys = latents * self.vocab_size + token_ids[batch.rows.long().cpu()]
        uniq, inverse = torch.unique(keys, return_inverse=True)
        mass = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inverse, values)
        self._keys.append(uniq)
        self._mass.append(mass)
        self._pending += uniq.numel()
        if self._pending > self.coalesce_every:
            self._coalesce()

    def _coalesce(self) -> None:
        keys, mass = torch.cat(self._keys), torch.cat(self._mass)
        uniq, inverse = torch.unique(keys, return_inverse=True)
        self._keys = [uniq]
        self._mass = [torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inverse, mass)]
        self._pending = 0

    def pairs(self) -> tuple[Tensor, Tensor, Tensor]:
        """Coalesced (latent [P], token_id [P], mass [P]) sorted by latent then token id."""
        self._coalesce()
        keys = self._keys[0]
        return keys // self.vocab_size, keys % self.vocab_size, self._mass[0]

    def stats(self) -> TriggerStats:
        """Per-latent trigger statistics of everything seen so far."""
        latents, tokens, mass = self.pairs()
        n = self.num_latents
        total = torch.zeros(n, dtype=torch.float64).index_add_(0, latents, mass)
        p = mass / total[latents].clamp_min(1e-300)
        plogp = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
        entropy = -torch.zeros(n, dtype=torch.float64).index_add_(0, latents, plogp)
        distinct = torch.bincount(latents, minlength=n)
        top_share = torch.zeros(n, dtype=torch.float64).scatter_reduce_(
            0, latents, p, reduce="amax", include_self=True
        )
        # top token id: the last entry of each latent's run after sorting by (latent, mass)
        order = torch.argsort(mass, stable=True)
        order = order[torch.argsort(latents[order], stable=True)]
        ends = torch.cumsum(distinct, 0) - 1
        top_token = torch.full((n,), -1, dtype=torch.long)
        has = distinct > 0
        top_token[has] = tokens[order][ends[has]]
        fired = self.fire_count.double()
        nan = torch.full((n,), math.nan, dtype=torch.float64)
        return TriggerStats(
            frequency=fired / max(self.tokens_seen, 1),
            mean_activation=torch.where(has, self.act_sum / fired.clamp_min(1), nan),
            entropy=torch.where(has, entropy, nan),
            top_token_share=torch.where(has, top_share, nan),
            top_token_id=top_token,
            distinct_tokens=distinct,
            fire_count=self.fire_count.clone(),
            tokens_seen=self.tokens_seen,
        )


@dataclass(frozen=True)
class TriggerStats:
    """Per-latent trigger statistics; NaN (and top_token_id −1) for latents that never fired."""

    frequency: Tensor
    """Share of tokens on which the latent is non-zero."""
    mean_activation: Tensor
    """Mean activation over the tokens where it fires."""
    entropy: Tensor
    """Entropy (nats) of the latent's activation mass over token ids: 0 = one token id only."""
    top_token_share: Tensor
    """Share of the activation mass held by the single most important token id."""
    top_token_id: Tensor
    distinct_tokens: Tensor
    """Number of distinct token ids on which it fired."""
    fire_count: Tensor
    tokens_seen: int

    def table(self) -> dict[str, list[float]]:
        """Columns as plain lists (NaN kept as float NaN), for JSON or npz."""
        return {
            "frequency": self.frequency.tolist(),
            "mean_activation": self.mean_activation.tolist(),
            "entropy": self.entropy.tolist(),
            "top_token_share": self.top_token_share.tolist(),
            "top_token_id": self.top_token_id.tolist(),
            "distinct_tokens": self.distinct_tokens.tolist(),
            "fire_count": self.fire_count.tolist(),
        }


# --------------------------------------------------------------------------------------------
# stable vs unstable


@dataclass(frozen=True)
class GroupComparison:
    """A statistic compared between stable and unstable latents: group summaries and a rank test."""

    statistic: str
    n_stable: int
    n_unstable: int
    mean_stable: float
    mean_unstable: float
    median_stable: float
    median_unstable: float
    mann_whitney_u: float
    p_value: float
    """Two-sided Mann-Whitney U test p-value (NaN when a group is empty)."""
    rank_biserial: float
    """Effect size 2U/(n₁n₂) − 1 in [−1, 1]: > 0 means stable latents tend to have larger values."""


def compare_groups(name: str, values: Tensor, stable: Tensor, unstable: Tensor) -> GroupComparison:
    """Compare `values [n]` between the `stable` and `unstable` masks, ignoring NaN entries."""
    from scipy.stats import mannwhitneyu

    values = values.double().cpu()
    if stable.shape != values.shape or unstable.shape != values.shape:
        raise DataError(
            f"compare_groups({name}): masks {tuple(stable.shape)}, {tuple(unstable.shape)} "
            f"do not match values {tuple(values.shape)}"
        )
    finite = torch.isfinite(values)
    a = values[stable.cpu() & finite]
    b = values[unstable.cpu() & finite]
    nan = math.nan
    u = p = rb = nan
    if a.numel() and b.numel():
        res = mannwhitneyu(a.numpy(), b.numpy(), alternative="two-sided")
        u, p = float(res.statistic), float(res.pvalue)
        rb = 2 * u / (a.numel() * b.numel()) - 1
    return GroupComparison(
        statistic=name,
        n_stable=int(a.numel()),
        n_unstable=int(b.numel()),
        mean_stable=float(a.mean()) if a.numel() else nan,
        mean_unstable=float(b.mean()) if b.numel() else nan,
        median_stable=float(a.median()) if a.numel() else nan,
        median_unstable=float(b.median()) if b.numel() else nan,
        mann_whitney_u=u,
        p_value=p,
        rank_biserial=rb,
    )


def _check_latents(latents: Tensor, num_latents: int) -> None:
    if latents.numel() and (int(latents.min()) < 0 or int(latents.max()) >= num_latents):
        raise DataError(f"latent indices must lie in [0, {num_latents}), got {int(latents.max())}")
