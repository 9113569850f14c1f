"""Cross-seed alignment: weights in, alignments and the cross-seed result out (exact, scalable assignment)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Resolved on first use: `saeseeds.align.sharing` (the CLI's flags) must not pull in torch, scipy and numba.
_WHERE = {
    "Assignment": "assignment", "AssignmentStats": "assignment", "max_cosine_assignment": "assignment",
    "row_max_cosine": "assignment", "CrossSeedResult": "cross_seed", "SeedSet": "cross_seed",
    "StabilityGroups": "cross_seed", "align_seeds": "cross_seed", "Alignment": "pair", "align_pair": "pair",
    "align_weights": "pair", "SharingRule": "sharing",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"saeseeds.align.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'saeseeds.align' has no attribute {name!r}")


__all__ = [
    "Alignment",
    "Assignment",
    "AssignmentStats",
    "CrossSeedResult",
    "SeedSet",
    "SharingRule",
    "StabilityGroups",
    "align_pair",
    "align_weights",
    "align_seeds",
    "max_cosine_assignment",
    "row_max_cosine",
]
