"""One screening pass over the approximate cosine matrix, kept as a small per-row candidate pool.

Each row's approximate values are split into groups of columns; the row keeps every column of its
top-``g`` groups (by group maximum) whose value is at least the ``(g+1)``-th group maximum ``t_i``.
Every column it drops has an approximate value ``<= t_i`` (rigorous bound), and the top ``g``
values of the row are always kept. Only cheap, vectorised work per block: one pass for the group
maxima, then operations on ``g x group`` values per row. Pool entries carry their approximate value
only; they are scored exactly later, when (and if) the optimality proof needs them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from saeseeds.align.screen_kernels import compact_rows, select_candidates
from saeseeds.align.similarity import PairScorer
from saeseeds.progress import tqdm


class Pool(NamedTuple):
    """Screened candidate pairs (approximate values) plus each row's bound on the pairs it dropped."""

    rows: np.ndarray  # [m] int32
    cols: np.ndarray  # [m] int32
    approx: np.ndarray  # [m] float32 approximate values (exactly the screen's float32 values)
    initial: np.ndarray  # [m] bool: to be scored exactly up front (row's leaders)
    bound: np.ndarray  # [n_a] float64: approx <= bound for every pair of the row not in the pool
    approx_max: np.ndarray  # [n_a] float64: the row's largest approximate value


def group_size(n_cols: int, groups: int) -> int:
    """Columns per group: about 8 groups per kept group, at most 32 columns each.

    The cap bounds a row's pool (at most `groups` x 32 columns are looked at): with 128-column
    groups a 131,072-latent pool outgrew 24 GB.
    """
    return int(max(1, min(32, n_cols // max(1, 8 * groups))))


def select_block(
    block: torch.Tensor, groups: int, leaders: int, slack: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates of one block [r, n]: (local row, column, value, is-leader, row bound, row max).

    The torch path (accelerators), and the reference for `screen_kernels.select_candidates`: the
    top `groups` groups by maximum are kept, with their values that reach the next group maximum
    (the bound). A leader reaches the row's `leaders`-th group maximum or `slack[row]` below its max.
    """
    r, n = block.shape
    size = group_size(n, groups)
    full = n // size
    gmax = block[:, : full * size].reshape(r, full, size).amax(dim=2)
    if full * size < n:
        gmax = torch.cat([gmax, block[:, full * size :].amax(dim=1, keepdim=True)], dim=1)
    n_groups = gmax.shape[1]
    take = min(groups, n_groups)
    top_vals, top_groups = torch.topk(gmax, min(take + 1, n_groups), dim=1, sorted=True)
    if n_groups > take:
        bound = top_vals[:, take]
    else:
        bound = torch.full((r,), -torch.inf, device=block.device, dtype=block.dtype)
    top_vals, top_groups = top_vals[:, :take], top_groups[:, :take]
    row_max = top_vals[:, 0]
    offsets = torch.arange(size, device=block.device)
    cols = (top_groups[:, :, None] * size + offsets).reshape(r, take * size)
    valid = cols < n
    vals = block.gather(1, cols.clamp_max(n - 1))
    keep = valid & (vals >= bound[:, None])
    lead_level = torch.minimum(top_vals[:, min(leaders, take) - 1], row_max - slack)
    lead = vals >= lead_level[:, None]
    loc, pos = keep.nonzero(as_tuple=True)
    return loc, cols[loc, pos], vals[loc, pos], lead[loc, pos], bound, row_max


def screen_pool(
    scorer: PairScorer,
    groups: int,
    leaders: int,
    *,
    progress: bool = False,
    label: str = "screen",
) -> Pool:
    """The first (and usually only) full screening pass of `scorer`'s matrix, row block by row block."""
    n_a = scorer.n_a
    rows_l, cols_l, vals_l, lead_l = [], [], [], []
    bound = np.empty(n_a)
    approx_max = np.empty(n_a)
    # a row's max may come from any column: its exact value is >= row_max - err_a - max err_b
    eb_max = float(scorer.err_b.max(initial=0.0))
    slack_all = 2 * (scorer.err_a + eb_max + scorer.err_const) + 1e-6
    blocks = scorer.iter_raw_blocks() if scorer.fused else scorer.iter_row_blocks()
    for ids, block in tqdm(blocks, total=-(-n_a // scorer.chunk_rows), desc=label,
                           disable=not progress, leave=False):
        sel = slice(int(ids[0]), int(ids[-1]) + 1)
        if scorer.fused:
            loc, cols, vals, lead, b, mx = _select_fused(scorer, ids, block, groups, leaders, slack_all[sel])
        else:
            slack = torch.as_tensor(slack_all[sel], dtype=torch.float32, device=scorer.device)
            found = select_block(block, groups, leaders, slack)
            loc, cols, vals, lead, b, mx = (t.cpu().numpy() for t in found)
        del block
        # compact storage (int32 ids, the float32 screen values as computed): ~65M entries at 131K
        rows_l.append(ids[loc].astype(np.int32))
        cols_l.append(cols.astype(np.int32))
        vals_l.append(vals.astype(np.float32))
        lead_l.append(lead)
        bound[ids] = b
        approx_max[ids] = mx
    return Pool(
        np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(vals_l),
        np.concatenate(lead_l), bound, approx_max,
    )


def _select_fused(
    scorer: PairScorer, ids: np.ndarray, raw: np.ndarray, groups: int, leaders: int, slack: np.ndarray
) -> tuple[np.ndarray, ...]:
    """`select_block` on a raw block by the numba kernel: the same candidates, as numpy arrays."""
    r = len(ids)
    size = group_size(scorer.n_b, groups)
    width = min(groups, -(-scorer.n_b // size)) * size
    row_f, col_f = scorer.raw_factors()
    out_cols = np.empty((r, width), np.int32)
    out_vals = np.empty((r, width), np.float32)
    out_lead = np.empty((r, width), np.bool_)
    count = np.empty(r, np.int64)
    bound = np.empty(r, np.float32)
    row_max = np.empty(r, np.float32)
    select_candidates(raw, r, row_f[ids[0] : ids[-1] + 1], col_f, size, groups, leaders,
                      slack.astype(np.float32), scorer.absolute, out_cols, out_vals, out_lead,
                      count, bound, row_max)
    loc, cols, vals, lead = compact_rows(out_cols, out_vals, out_lead, count)
    return loc, cols, vals, lead, bound, row_max
