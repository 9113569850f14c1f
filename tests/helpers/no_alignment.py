"""Make every alignment entry point fail, for tests proving that some code reuses an alignment instead of computing one."""

from __future__ import annotations

import pytest

ENTRY_POINTS = (
    "saeseeds.align.pair.max_cosine_assignments",  # every pair alignment
    "saeseeds.align.assignment.dense_cosines",  # dense row maxima (row_max_cosine)
    "saeseeds.align.assignment.dense_matches",  # dense matchings
    "saeseeds.align.assignment.PairScorer",  # the sparse path
)


def forbid_alignment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any alignment computed after this raises AssertionError."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an alignment was computed")

    for target in ENTRY_POINTS:
        monkeypatch.setattr(target, refuse)
