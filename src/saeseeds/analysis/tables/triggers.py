"""What triggers each latent, stable vs unstable (triggers.json): firing frequency and token statistics per seed,
compared between the alive stable and unstable latents (descriptive, never pooled over seeds); the frequency
strata the matched controls draw from; the first seed's top contexts (contexts.html)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis.tables.seam import Batch, Inputs, internal, masks
from saeseeds.analysis.triggers import (
    ContextExample,
    GroupComparison,
    TopActivations,
    TriggerAccumulator,
    TriggerStats,
    compare_groups,
    top_contexts,
)
from saeseeds.analysis.verdicts import frequency_strata

TRIGGER_STATISTICS = ("frequency", "mean_activation", "entropy", "top_token_share", "distinct_tokens")


@dataclass
class SeedTriggers:
    """One seed's stable vs unstable comparisons, alive latents only."""

    seed: int
    n_dead: int
    comparisons: list[GroupComparison]


@dataclass
class Contexts:
    """The latents shown on the contexts page (the first seed's least and most stable, alive) and their contexts."""

    least_stable: list[int]
    most_stable: list[int]
    examples: dict[int, list[ContextExample]]


@dataclass
class TriggerTable:
    """triggers.json, and the per-latent statistics behind it (kept in memory for figures, strata and pages)."""

    pooled_over_seeds: bool = False
    dead_latents: str = "excluded (alive latents only); counted per seed"
    tokens: int = 0
    per_seed: list[SeedTriggers] = field(default_factory=list)
    stats: list[TriggerStats] = internal(default_factory=list)
    alive: list[Tensor] = internal(default_factory=list)
    """Per seed: the latents that fire on the analysis tokens."""
    strata: list[Tensor] = internal(default_factory=list)
    """Per seed: each alive latent's frequency stratum (-1: dead), what the matched controls draw from."""
    contexts: Contexts | None = internal(default=None)
    """Top contexts of the first seed (runs with token ids and a tokenizer)."""


def compare_triggers(
    stats: Sequence[TriggerStats], groups: Sequence[StabilityGroups], *, has_tokens: bool
) -> list[list[GroupComparison]]:
    """Stable vs unstable alive latents of each seed (never pooled), for each trigger statistic (descriptive)."""
    names = TRIGGER_STATISTICS if has_tokens else TRIGGER_STATISTICS[:2]
    out = []
    for s, (stable, unstable) in zip(stats, map(masks, groups)):
        alive = s.fire_count > 0
        out.append([compare_groups(name, getattr(s, name).double(), stable & alive, unstable & alive)
                    for name in names])
    return out


class TriggerAnalysis:
    """Trigger statistics of every seed and the first seed's top activations, accumulated batch by batch."""

    name: ClassVar[str] = "triggers"
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        vocab = inputs.tokens.vocab_size if inputs.tokens.has_tokens else 1
        self.accumulators = [TriggerAccumulator(sae.num_latents, vocab) for sae in inputs.saes]
        self.top = TopActivations(inputs.saes[0].num_latents, inputs.opts.n_top)

    def update(self, batch: Batch) -> None:
        for acc, code in zip(self.accumulators, batch.codes):
            acc.update(code.sparse, batch.token_ids)
        self.top.update(batch.codes[0].sparse, batch.positions)

    def result(self, done: Any) -> TriggerTable:
        inp = self.inputs
        stats = [acc.stats() for acc in self.accumulators]
        alive = [s.fire_count > 0 for s in stats]
        comparisons = compare_triggers(stats, inp.groups, has_tokens=inp.tokens.has_tokens)
        per_seed = [SeedTriggers(seed, int((~a).sum()), comps) for seed, a, comps in zip(inp.seeds, alive, comparisons)]
        strata = [
            frequency_strata(t.frequency, a, n_bins=inp.opts.freq_bins, match=inp.opts.match,
                             mass=t.frequency * t.mean_activation.nan_to_num(0) * s.W_dec.detach().norm(dim=1).double().cpu())
            for t, a, s in zip(stats, alive, inp.saes)
        ]
        return TriggerTable(tokens=stats[0].tokens_seen, per_seed=per_seed, stats=stats, alive=alive, strata=strata,
                            contexts=self._contexts(stats[0], alive[0]))

    def _contexts(self, stats: TriggerStats, alive: Tensor) -> Contexts | None:
        """The first seed's `n_show` least and most stable alive latents (ties: most frequent first), in context."""
        tokens, n_show = self.inputs.tokens, self.inputs.opts.n_show
        if not (tokens.has_tokens and tokens.tokenizer is not None):
            return None
        stab, freq = torch.from_numpy(self.inputs.groups[0].stability), stats.frequency
        by_freq = torch.argsort(freq, descending=True, stable=True)  # ties in stability: most frequent first
        least_order = by_freq[torch.argsort(stab[by_freq], stable=True)]
        most_order = by_freq[torch.argsort(stab[by_freq], descending=True, stable=True)]
        least = least_order[alive[least_order]][:n_show].tolist()
        most = most_order[alive[most_order]][:n_show].tolist()
        examples = top_contexts(self.top, least + most, tokens.chunks, tokens.tokenizer.decode)
        return Contexts(least, most, examples)
