"""The seam every analysis of one configuration plugs into, and the one writer of their results to JSON.

An analysis (`Analysis`) is built from the configuration's `Inputs`, sees every batch of analysis tokens once,
encoded by every seed (`update(batch)`: accumulate), then gives its typed result (`result(done)`), reading the
results of the analyses it `needs` from `done` (the `ConfigAnalysis` being filled). `write_tables` writes each
result as `<name>.json` through `as_record`: a dataclass's fields in order, less its `internal` fields (tensors
kept for figures and pages) and its `optional` fields that are None; a result may define `as_record()` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

from saeseeds.align.cross_seed import CrossSeedResult, StabilityGroups
from saeseeds.align.sharing import STABILITY_KINDS, SharingRule
from saeseeds.analysis.eval_data import EvalData
from saeseeds.analysis.options import AnalyzeOptions
from saeseeds.analysis.triggers import SparseActivations
from saeseeds.records import write_record
from saeseeds.sae.model import SparseAutoencoder


def internal(**kwargs: Any) -> Any:
    """A result field kept in memory (figures, pages, later analyses) and never written to JSON."""
    return field(metadata={"internal": True}, **kwargs)


def optional(**kwargs: Any) -> Any:
    """A result field written only when it is not None (keys that only some configurations have)."""
    return field(default=None, metadata={"optional": True}, **kwargs)


def as_record(value: Any) -> Any:
    """A result as JSON-ready data: dataclasses by their fields in order (less internal ones and unset optional
    ones), mappings and sequences element by element; a result whose key order another module sets (the claims'
    verdicts) by its own `as_record()`. The one conversion from results to files."""
    if callable(getattr(value, "as_record", None)):
        return value.as_record()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_record(getattr(value, f.name)) for f in fields(value)
                if not f.metadata.get("internal")
                and not (f.metadata.get("optional") and getattr(value, f.name) is None)}
    if isinstance(value, Mapping):
        return {k: as_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_record(v) for v in value]
    return value


def masks(g: StabilityGroups) -> tuple[Tensor, Tensor]:
    """A seed's (stable, unstable) masks as torch tensors: align keeps them in numpy, the analyses compute in torch."""
    return torch.from_numpy(g.stable), torch.from_numpy(g.unstable)


def alternate_rule(rule: SharingRule) -> SharingRule:
    """The same rule with the other stability estimator (shared ↔ reappears)."""
    return rule.replace(stability=next(k for k in STABILITY_KINDS if k != rule.stability))


@dataclass
class Inputs:
    """What every analysis of one configuration reads: its SAEs, data, options and stability (nothing aligned)."""

    hookpoint: str
    sae_name: str
    seeds: list[int]
    saes: list[SparseAutoencoder]
    held_out: EvalData
    """The held-out set: the model-based ablation runs on its chunks."""
    tokens: EvalData
    """The analysis tokens (held-out rows, then training rows): firing, triggers, FVU, covariance."""
    opts: AnalyzeOptions
    cross: CrossSeedResult
    hook_input: bool = False

    @cached_property
    def groups(self) -> list[StabilityGroups]:
        """Each seed's stability and stable / unstable split under `opts.rule`."""
        return self.cross.with_rule(self.opts.rule).groups()

    @cached_property
    def alternate_groups(self) -> list[StabilityGroups]:
        """The same under the other stability estimator (`alternate_rule`)."""
        return self.cross.with_rule(alternate_rule(self.opts.rule)).groups()

    @cached_property
    def generators(self) -> list[torch.Generator]:
        """Each seed's random stream under `opts.rule` (`fresh_generators`); shared by the analyses in the order they
        run (ablation tests, then the claims' rank tests)."""
        return self.fresh_generators()

    def fresh_generators(self) -> list[torch.Generator]:
        """A new random stream per seed, seeded by the seed's index only, so that two estimators are judged alike
        (the other estimator's tests start from the same states)."""
        return [torch.Generator().manual_seed(self.opts.seed * 1000 + i) for i in range(len(self.saes))]


@dataclass
class SeedCode:
    """One seed's encode of one batch."""

    sparse: SparseActivations
    """The non-zero activations (COO)."""
    code: Any
    """The SAE's `LatentCode` (values, indices): what `decode` takes."""


@dataclass
class Batch:
    """One batch of analysis tokens and its encode by every seed (`codes[i]`: seed i)."""

    x: Tensor
    token_ids: Tensor
    """int64 [rows]; zeros when the run's activations have no token ids."""
    positions: Tensor | None
    codes: list[SeedCode]


class Analysis(Protocol):
    """One analysis of a configuration: accumulates over the analysis tokens, then gives its typed result."""

    name: ClassVar[str]
    """Its attribute on `ConfigAnalysis` and its file, `<name>.json` (schema `saeseeds.<name>/1`)."""
    needs: ClassVar[tuple[str, ...]]
    """The analyses whose results it reads (computed first)."""

    def __init__(self, inputs: Inputs) -> None: ...

    def update(self, batch: Batch) -> None:
        """Accumulate one batch (every batch is seen once, in order)."""

    def result(self, done: Any) -> Any:
        """The typed result, from what was accumulated and the results in `done` (a `ConfigAnalysis`)."""


def write_tables(done: Any, names: Sequence[str], target: Path) -> list[str]:
    """Write each named result of `done` as `<name>.json` (schema `saeseeds.<name>/1`); returns the file names."""
    files = []
    for name in names:
        write_record(target / f"{name}.json", f"saeseeds.{name}/1", as_record(getattr(done, name)))
        files.append(f"{name}.json")
    return files
