"""Cross-seed alignment: chunked cosine similarities, exact scalable assignment, shared latents, stability."""

from saeseeds.align.assignment import Assignment, AssignmentStats, max_cosine_assignment
from saeseeds.align.pair import DEFAULT_THRESHOLD, Alignment, align_pair, align_weights, shared_mask
from saeseeds.align.similarity import PairScorer, cosine_blocks, normalise_rows, pick_device

__all__ = [
    "DEFAULT_THRESHOLD",
    "Alignment",
    "Assignment",
    "AssignmentStats",
    "PairScorer",
    "align_pair",
    "align_weights",
    "cosine_blocks",
    "max_cosine_assignment",
    "normalise_rows",
    "pick_device",
    "shared_mask",
]
