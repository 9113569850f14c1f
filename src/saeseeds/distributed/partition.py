"""Split weighted work items over ranks: longest-processing-time-first, deterministic, so every rank agrees."""

from __future__ import annotations

from collections.abc import Sequence


def partition_by_cost(costs: Sequence[float], parts: int) -> list[list[int]]:
    """Indices of `costs` in `parts` groups of near-equal total cost (LPT greedy; ties by index).

    Every rank computes the same answer from the same costs, so no message is needed to agree on it.
    Each group is returned in ascending index order so a rank walks its items in the run's own order.
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    loads = [0.0] * parts
    groups: list[list[int]] = [[] for _ in range(parts)]
    for index in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        target = min(range(parts), key=lambda p: (loads[p], p))
        groups[target].append(index)
        loads[target] += float(costs[index])
    return [sorted(group) for group in groups]
