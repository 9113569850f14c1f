"""Per-latent stability across seeds, counted per seed (stability.json): nothing aligned, the cross-seed result
judged by the analysis rule (and, with `alternate`, by the other estimator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis.tables.seam import Batch, Inputs, alternate_rule, internal, masks, optional

DEAD = "never fires on the analysis tokens; excluded from every stable-vs-unstable test"


@dataclass
class SeedStability:
    """One seed's counts: latents, stable, unstable (all and alive), dead, mean stability."""

    seed: int
    n_latents: int
    n_stable: int
    n_unstable: int
    n_stable_alive: int
    n_unstable_alive: int
    n_dead: int
    mean_stability: float


@dataclass
class AlternateStability:
    """The same counts under the other stability estimator."""

    rule: dict[str, Any]
    per_seed: list[SeedStability]


@dataclass
class StabilityTable:
    """stability.json: the rule, per-seed counts, the analysis tokens; the groups themselves kept in memory."""

    rule: dict[str, Any]
    per_seed: list[SeedStability]
    tokens: int
    dead: str = DEAD
    alternate: AlternateStability | None = optional()
    groups: list[StabilityGroups] = internal(default_factory=list)
    """Each seed's stability and stable / unstable masks (numpy) under the rule."""


def stability_counts(seeds: Sequence[int], groups: Sequence[StabilityGroups], alive: Sequence[Tensor]
                     ) -> list[SeedStability]:
    """Per seed: latents, stable, unstable (all and alive), dead, mean stability."""
    return [
        SeedStability(seed, int(g.stability.size), int(stable.sum()), int(unstable.sum()), int((stable & a).sum()),
                      int((unstable & a).sum()), int((~a).sum()), float(g.stability.mean()))
        for seed, g, (stable, unstable), a in zip(seeds, groups, map(masks, groups), alive)
    ]


class StabilityAnalysis:
    """Counts the stable / unstable / dead latents of every seed (dead: from the trigger statistics)."""

    name: ClassVar[str] = "stability"
    needs: ClassVar[tuple[str, ...]] = ("triggers",)

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    def update(self, batch: Batch) -> None:
        """Nothing to accumulate: stability comes from the cross-seed result."""

    def result(self, done: Any) -> StabilityTable:
        inp, alive = self.inputs, done.triggers.alive
        alternate = None
        if inp.opts.alternate:
            alternate = AlternateStability(alternate_rule(inp.opts.rule).to_dict(),
                                           stability_counts(inp.seeds, inp.alternate_groups, alive))
        return StabilityTable(inp.opts.rule.to_dict(), stability_counts(inp.seeds, inp.groups, alive),
                              done.triggers.stats[0].tokens_seen, alternate=alternate, groups=inp.groups)
