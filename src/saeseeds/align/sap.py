"""Sparse assignment compiled with numba: auction prices, then exact shortest augmenting paths.

Minimisation form: costs ``w`` on the graph's edges, row duals ``u`` and column duals ``v`` with
``u[i] + v[j] <= w[i, j]`` on every edge and equality on matched edges (complementary slackness).
A forward auction with eps-scaling first finds near-optimal prices cheaply (`auction_prices`); from
them every row takes its cheapest column (`assign_cheapest`), and each row left free is matched by
one Dijkstra search over reduced costs (Jonker-Volgenant / Crouse style, with a binary heap because
the graph is sparse), which keeps the duals feasible and makes the matching exactly optimal. Near-
optimal prices keep those searches short: at 32,768 latents the Dijkstra phase alone took 2.8 s from
zero prices and takes 0.02 s after a 0.1 s auction. A later solve starts the auction from the previous
prices. `capped_prices` / `minimal_prices` then pick, among the duals that prove the matching optimal
on the graph, the ones least likely to be violated by pairs outside it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

import saeseeds.numba_cache  # noqa: F401  (a writable cache dir before the kernels are defined)

NO_PATH = -2
"""Returned by `augment_rows` when every free row was matched; otherwise the row with no path."""


@njit(cache=True)
def _heap_push(keys: np.ndarray, vals: np.ndarray, size: int, key: float, val: int) -> int:
    """Push onto a binary min-heap stored in (keys, vals); returns the new size (arrays must have room)."""
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if keys[parent] <= key:
            break
        keys[pos] = keys[parent]
        vals[pos] = vals[parent]
        pos = parent
    keys[pos] = key
    vals[pos] = val
    return size + 1


@njit(cache=True)
def _heap_pop(keys: np.ndarray, vals: np.ndarray, size: int) -> tuple[float, int, int]:
    """Pop the smallest entry: (key, val, new size)."""
    top_k = keys[0]
    top_v = vals[0]
    size -= 1
    last_k = keys[size]
    last_v = vals[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= last_k:
            break
        keys[pos] = keys[child]
        vals[pos] = vals[child]
        pos = child
    keys[pos] = last_k
    vals[pos] = last_v
    return top_k, top_v, size


@njit(cache=True)
def _grow(keys: np.ndarray, vals: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The heap arrays doubled in capacity."""
    nk = np.empty(2 * len(keys), np.float64)
    nv = np.empty(2 * len(vals), np.int64)
    nk[:size] = keys[:size]
    nv[:size] = vals[:size]
    return nk, nv


@njit(cache=True)
def _bid(
    indptr: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    p: np.ndarray,
    owner: np.ndarray,
    queue: np.ndarray,
    count: int,
    eps: float,
    lone: float,
    budget: int,
) -> int:
    """Forward auction until no row waits in `queue[:count]`: each waiting row bids for its best
    column (profit ``a - p``), raising its price by the margin over its second best plus eps and
    evicting the owner, who waits next. Returns the bids left of `budget` (-1: a row has no edge or
    the budget ran out)."""
    n_rows = len(queue)
    head = 0
    while count > 0:
        i = queue[head]
        head = head + 1 if head + 1 < n_rows else 0
        count -= 1
        best = -np.inf
        second = -np.inf
        j1 = -1
        for e in range(indptr[i], indptr[i + 1]):
            val = a[e] - p[cols[e]]
            if val > second:
                if val > best:
                    second = best
                    best = val
                    j1 = cols[e]
                else:
                    second = val
        if j1 < 0 or budget <= 0:
            return -1
        if second == -np.inf:
            second = best - lone  # a row with a single edge
        budget -= 1
        p[j1] += best - second + eps
        k = owner[j1]
        owner[j1] = i
        if k >= 0:
            tail = head + count
            queue[tail - n_rows if tail >= n_rows else tail] = k
            count += 1
    return budget


@njit(cache=True)
def _lone_margin(a: np.ndarray) -> float:
    """Bid margin of a row with a single edge: larger than any difference of values."""
    span = 1.0
    for e in range(len(a)):
        span = max(span, abs(a[e]))
    return 4.0 * span


@njit(cache=True)
def auction_prices(
    indptr: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    p: np.ndarray,
    eps_start: float,
    eps_end: float,
    factor: float,
    max_bids: int,
) -> bool:
    """Near-optimal column prices by forward auction with eps-scaling (Bertsekas), updated in place.

    Maximisation form (`_bid`). Each phase divides eps by `factor` and lets every row bid again from
    the prices reached. The prices are only a starting point: the exact phase (`assign_cheapest` +
    `augment_rows`) makes the result optimal. Returns False when `max_bids` ran out (no full
    matching, or a pathological input); `p` is then unusable.
    """
    n_rows = len(indptr) - 1
    owner = np.empty(len(p), np.int64)
    queue = np.empty(max(n_rows, 1), np.int64)
    lone = _lone_margin(a)
    eps = eps_start
    budget = max_bids
    while True:
        owner[:] = -1
        for i in range(n_rows):
            queue[i] = i
        budget = _bid(indptr, cols, a, p, owner, queue, n_rows, eps, lone, budget)
        if budget < 0:
            return False
        if eps <= eps_end:
            return True
        eps = max(eps / factor, eps_end)


@njit(cache=True)
def resume_auction(
    indptr: np.ndarray,
    cols: np.ndarray,
    a: np.ndarray,
    p: np.ndarray,
    col_of_row: np.ndarray,
    eps: float,
    max_free: int,
    max_bids: int,
) -> int:
    """One auction phase from an earlier assignment and its prices (edges were added since).

    Rows whose column is still within eps of their best profit keep it; the others bid. Returns the
    number of rows that had to bid, or -1 (prices untouched) when more than `max_free` would, or -2
    when `max_bids` ran out (`p` is then unusable).
    """
    n_rows = len(indptr) - 1
    owner = np.full(len(p), -1, np.int64)
    queue = np.empty(max(n_rows, 1), np.int64)
    count = 0
    for i in range(n_rows):
        mine = col_of_row[i]
        own = -np.inf
        best = -np.inf
        for e in range(indptr[i], indptr[i + 1]):
            val = a[e] - p[cols[e]]
            if cols[e] == mine:
                own = val
            best = max(best, val)
        if mine >= 0 and own >= best - eps and owner[mine] < 0:
            owner[mine] = i
        else:
            queue[count] = i
            count += 1
            if count > max_free:
                return -1
    if _bid(indptr, cols, a, p, owner, queue, count, eps, _lone_margin(a), max_bids) < 0:
        return -2
    return count


@njit(cache=True)
def assign_cheapest(
    indptr: np.ndarray,
    cols: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    col_of_row: np.ndarray,
    row_of_col: np.ndarray,
) -> None:
    """Start of the exact phase (minimisation form): ``u[i]`` = the row's least reduced cost ``w - v``
    (so the duals are feasible) and each row takes that column if it is still free.
    """
    n_rows = len(indptr) - 1
    col_of_row[:] = -1
    row_of_col[:] = -1
    for i in range(n_rows):
        best = np.inf
        arg = -1
        for e in range(indptr[i], indptr[i + 1]):
            val = w[e] - v[cols[e]]
            if val < best:
                best = val
                arg = cols[e]
        u[i] = best
        if arg >= 0 and row_of_col[arg] < 0:
            row_of_col[arg] = i
            col_of_row[i] = arg


@njit(cache=True)
def augment_rows(
    indptr: np.ndarray,
    cols: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    col_of_row: np.ndarray,
    row_of_col: np.ndarray,
) -> int:
    """Match every free row by a shortest augmenting path; duals stay feasible. Returns NO_PATH or a stuck row."""
    n_rows = len(indptr) - 1
    n_cols = len(v)
    dist = np.full(n_cols, np.inf)
    pred = np.full(n_cols, -1, np.int64)
    done = np.zeros(n_cols, np.bool_)
    touched = np.empty(n_cols, np.int64)
    scanned = np.empty(n_cols, np.int64)
    hk = np.empty(1024, np.float64)
    hv = np.empty(1024, np.int64)
    for s in range(n_rows):
        if col_of_row[s] >= 0:
            continue
        n_touched = 0
        n_scanned = 0
        size = 0
        i = s
        d_i = 0.0
        sink = -1
        d_sink = 0.0
        while True:
            u_i = u[i]
            for e in range(indptr[i], indptr[i + 1]):
                j = cols[e]
                if done[j]:
                    continue
                red = w[e] - u_i - v[j]
                nd = d_i + (red if red > 0.0 else 0.0)
                if nd < dist[j]:
                    if dist[j] == np.inf:
                        touched[n_touched] = j
                        n_touched += 1
                    dist[j] = nd
                    pred[j] = i
                    if size == len(hk):
                        hk, hv = _grow(hk, hv, size)
                    size = _heap_push(hk, hv, size, nd, j)
            j = -1
            d_j = 0.0
            while size > 0:
                key, cand, size = _heap_pop(hk, hv, size)
                if done[cand] or key > dist[cand]:
                    continue
                j = cand
                d_j = key
                break
            if j < 0:
                for t in range(n_touched):
                    c = touched[t]
                    dist[c] = np.inf
                    done[c] = False
                    pred[c] = -1
                return s
            done[j] = True
            scanned[n_scanned] = j
            n_scanned += 1
            if row_of_col[j] < 0:
                sink = j
                d_sink = d_j
                break
            i = row_of_col[j]
            d_i = d_j
        u[s] += d_sink
        for t in range(n_scanned):
            j = scanned[t]
            if j == sink:
                continue
            delta = d_sink - dist[j]
            v[j] -= delta
            u[row_of_col[j]] += delta
        j = sink
        while True:
            i = pred[j]
            row_of_col[j] = i
            nxt = col_of_row[i]
            col_of_row[i] = j
            if i == s:
                break
            j = nxt
        for t in range(n_touched):
            c = touched[t]
            dist[c] = np.inf
            done[c] = False
            pred[c] = -1
    return NO_PATH


@njit(cache=True)
def _matched_costs(indptr: np.ndarray, cols: np.ndarray, w: np.ndarray, col_of_row: np.ndarray) -> np.ndarray:
    """Cost of every row's matched edge."""
    n_rows = len(indptr) - 1
    out = np.empty(n_rows)
    for i in range(n_rows):
        m = col_of_row[i]
        for e in range(indptr[i], indptr[i + 1]):
            if cols[e] == m:
                out[i] = w[e]
                break
    return out


@njit(cache=True)
def _column_dijkstra(start: np.ndarray, ptr: np.ndarray, target: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Multi-source shortest paths over columns: ``dist[j] = min(start[j], dist[k] + length[k -> j])``.

    Edges of column k are ``target[ptr[k]:ptr[k + 1]]``; lengths must be non-negative (tiny negative
    float noise is clamped to 0).
    """
    n = len(start)
    dist = start.copy()
    done = np.zeros(n, np.bool_)
    hk = np.empty(2 * n + 16, np.float64)
    hv = np.empty(2 * n + 16, np.int64)
    size = 0
    for j in range(n):
        size = _heap_push(hk, hv, size, dist[j], j)
    while size > 0:
        key, k, size = _heap_pop(hk, hv, size)
        if done[k] or key > dist[k]:
            continue
        done[k] = True
        for e in range(ptr[k], ptr[k + 1]):
            j = target[e]
            if done[j]:
                continue
            nd = key + (length[e] if length[e] > 0.0 else 0.0)
            if nd < dist[j]:
                dist[j] = nd
                if size == len(hk):
                    hk, hv = _grow(hk, hv, size)
                size = _heap_push(hk, hv, size, nd, j)
    return dist


@njit(cache=True)
def minimal_prices(
    indptr: np.ndarray,
    cols: np.ndarray,
    w: np.ndarray,
    v: np.ndarray,
    col_of_row: np.ndarray,
    row_of_col: np.ndarray,
    out: np.ndarray,
) -> None:
    """The least column prices (max form, floor 0) that keep the matching optimal, into `out`.

    With values ``c = -w`` and prices ``p = -v``, feasibility reads ``p[j] >= p[m(i)] - (c[i, m(i)] -
    c[i, j])`` on every edge (i, j): the least solution above 0 is a longest-path problem over edges
    m(i) -> j, solved as one multi-source Dijkstra with lengths made non-negative by the current
    (feasible) prices. It is 0 on unmatched columns, as rectangular problems need.
    """
    n_cols = len(v)
    p = -v
    p_min = p.min()
    matched_w = _matched_costs(indptr, cols, w, col_of_row)
    ptr = np.zeros(n_cols + 1, np.int64)
    for k in range(n_cols):
        i = row_of_col[k]
        ptr[k + 1] = ptr[k] + (indptr[i + 1] - indptr[i] if i >= 0 else 0)
    target = np.empty(ptr[n_cols], np.int64)
    length = np.empty(ptr[n_cols], np.float64)
    for k in range(n_cols):
        i = row_of_col[k]
        if i < 0:
            continue
        pos = ptr[k]
        for e in range(indptr[i], indptr[i + 1]):
            target[pos] = cols[e]
            length[pos] = (w[e] - matched_w[i]) - p[k] + p[cols[e]]
            pos += 1
    dist = _column_dijkstra(p - p_min, ptr, target, length)
    for j in range(n_cols):
        x = dist[j] + p_min - p[j]
        out[j] = -x if x < 0.0 else 0.0


@njit(cache=True)
def capped_prices(
    indptr: np.ndarray,
    cols: np.ndarray,
    w: np.ndarray,
    v: np.ndarray,
    col_of_row: np.ndarray,
    out: np.ndarray,
) -> None:
    """The greatest column duals (max form) capped at 0 that keep the matching optimal, into `out`.

    Feasibility in max form reads ``y[m(i)] <= y[j] + (c[i, m(i)] - c[i, j])`` on every edge (i, j):
    the greatest solution below 0 is a shortest-path problem over edges j -> m(i) from a virtual
    source at 0, solved by one Dijkstra with lengths made non-negative by the current duals. Rows
    whose matched column is pushed down keep larger profits ``c[i, m(i)] - y[m(i)]``.
    """
    n_cols = len(v)
    n_rows = len(indptr) - 1
    y = -v
    matched_w = _matched_costs(indptr, cols, w, col_of_row)
    ptr = np.zeros(n_cols + 1, np.int64)
    for e in range(indptr[n_rows]):
        ptr[cols[e] + 1] += 1
    for j in range(n_cols):
        ptr[j + 1] += ptr[j]
    fill = ptr[:-1].copy()
    target = np.empty(indptr[n_rows], np.int64)
    length = np.empty(indptr[n_rows], np.float64)
    for i in range(n_rows):
        k = col_of_row[i]
        for e in range(indptr[i], indptr[i + 1]):
            j = cols[e]
            target[fill[j]] = k
            length[fill[j]] = (w[e] - matched_w[i]) + y[j] - y[k]
            fill[j] += 1
    y_max = y.max()
    dist = _column_dijkstra(y_max - y, ptr, target, length)
    for j in range(n_cols):
        x = dist[j] - y_max + y[j]
        out[j] = x if x < 0.0 else 0.0


@njit(cache=True)
def merge_csr(
    ptr_a: np.ndarray, cols_a: np.ndarray, vals_a: np.ndarray, ptr_b: np.ndarray, cols_b: np.ndarray,
    vals_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of two CSR graphs with sorted, duplicate-free rows; a pair in both keeps a's value."""
    n_rows = len(ptr_a) - 1
    ptr = np.zeros(n_rows + 1, np.int64)
    for i in range(n_rows):
        x, y = ptr_a[i], ptr_b[i]
        count = 0
        while x < ptr_a[i + 1] or y < ptr_b[i + 1]:
            if y == ptr_b[i + 1] or (x < ptr_a[i + 1] and cols_a[x] < cols_b[y]):
                x += 1
            elif x == ptr_a[i + 1] or cols_b[y] < cols_a[x]:
                y += 1
            else:
                x += 1
                y += 1
            count += 1
        ptr[i + 1] = ptr[i] + count
    cols = np.empty(ptr[n_rows], np.int64)
    vals = np.empty(ptr[n_rows], np.float64)
    for i in range(n_rows):
        x, y, k = ptr_a[i], ptr_b[i], ptr[i]
        while x < ptr_a[i + 1] or y < ptr_b[i + 1]:
            if y == ptr_b[i + 1] or (x < ptr_a[i + 1] and cols_a[x] < cols_b[y]):
                cols[k], vals[k] = cols_a[x], vals_a[x]
                x += 1
            elif x == ptr_a[i + 1] or cols_b[y] < cols_a[x]:
                cols[k], vals[k] = cols_b[y], vals_b[y]
                y += 1
            else:
                cols[k], vals[k] = cols_a[x], vals_a[x]
                x += 1
                y += 1
            k += 1
    return ptr, cols, vals
