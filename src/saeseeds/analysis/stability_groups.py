"""Per-latent feature stability across seeds and the stable / unstable split (DESIGN.md "Feature stability").

Stability of a latent of seed s is the fraction of the other seeds in which it is shared (Paulo & Belrose).
Default cut: stable = shared in at least half of the other seeds; unstable = shared in none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from saeseeds.errors import DataError

STABLE_CUT = 0.5
"""A latent is stable when shared in at least this fraction of the other seeds."""


@dataclass(frozen=True)
class StabilityGroups:
    """Stability scores of one SAE's latents and the masks of the stable and unstable groups."""

    stability: Tensor
    """float [n]: fraction of the other seeds in which the latent is shared."""
    stable: Tensor
    """bool [n]: stability ≥ stable_cut."""
    unstable: Tensor
    """bool [n]: shared in no other seed (stability = 0)."""
    n_others: int
    stable_cut: float


def split_by_stability(stability: Tensor, n_others: int, *, stable_cut: float = STABLE_CUT) -> StabilityGroups:
    """Stable (≥ `stable_cut`) and unstable (= 0) masks of a stability vector."""
    if stability.ndim != 1:
        raise DataError(f"stability: expected [num_latents], got {tuple(stability.shape)}")
    if not 0 < stable_cut <= 1:
        raise DataError(f"stable_cut must lie in (0, 1], got {stable_cut}")
    stability = stability.double().cpu()
    return StabilityGroups(
        stability=stability,
        stable=stability >= stable_cut - 1e-12,
        unstable=stability <= 0,
        n_others=n_others,
        stable_cut=stable_cut,
    )


def stability_from_shared(shared: Tensor) -> Tensor:
    """Stability from `shared [M, n]` (row m: which latents are shared with the m-th other seed)."""
    if shared.ndim != 2 or shared.shape[0] == 0:
        raise DataError(f"shared: expected [other seeds ≥ 1, num_latents], got {tuple(shared.shape)}")
    return shared.double().mean(0)


def shared_matrix_all_seeds(
    decoders: Sequence[Tensor], encoders: Sequence[Tensor], *, threshold: float = 0.7, device: str | None = None
) -> list[Tensor]:
    """For every seed s, `shared [S−1, n_s]` against each other seed, from S(S−1)/2 pairwise alignments.

    Uses `saeseeds.align.align_weights` on (a, b) and reads b's side from the same matching: with
    equal dictionary sizes the assignment is a bijection, so y of b is shared with a exactly when its
    partner x of a is shared with b.
    """
    from saeseeds.align import align_weights

    s_count = len(decoders)
    if s_count < 2 or len(encoders) != s_count:
        raise DataError(f"stability needs ≥ 2 seeds with decoders and encoders, got {s_count} and {len(encoders)}")
    rows: list[list[Tensor]] = [[] for _ in range(s_count)]
    for a in range(s_count):
        for b in range(a + 1, s_count):
            al = align_weights(decoders[a], encoders[a], decoders[b], encoders[b], threshold=threshold, device=device)
            shared_a = torch.as_tensor(al.shared).bool().cpu()
            rows[a].append(shared_a)
            if decoders[a].shape[0] == decoders[b].shape[0]:
                shared_b = torch.zeros(decoders[b].shape[0], dtype=torch.bool)
                partners = torch.as_tensor(al.dec_partner).long().cpu()[shared_a]
                shared_b[partners] = True
            else:
                back = align_weights(decoders[b], encoders[b], decoders[a], encoders[a], threshold=threshold, device=device)
                shared_b = torch.as_tensor(back.shared).bool().cpu()
            rows[b].append(shared_b)
    return [torch.stack(r) for r in rows]
