"""What the stable and unstable latents carry (ablation.json): FVU, and with `--lm-loss` the model's loss (or
output) recovered, with none / stable / unstable / all but stable / all but unstable / all latents ablated and
against random sets matched on firing frequency; each seed's tests of the two carry claims come with its table."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis.ablation import (
    AblationRow,
    AblationSet,
    ablation_fvu,
    ablation_lm_loss,
    ablation_table,
)
from saeseeds.analysis.output_recovered import ablation_output_recovered
from saeseeds.analysis.tables.seam import Batch, Inputs, internal, masks, optional
from saeseeds.analysis.verdicts import FIXED_SETS, MAX_DENSE_LATENTS, AblationStats, ablation_test
from saeseeds.errors import DataError

SetMetric = Callable[[Tensor], list[dict[str, float]]]
"""Metrics of each set of a stack of latent masks `[sets, num_latents]`."""


@dataclass
class AblationTableRow:
    """One set (or family of random controls): FVU metrics, and the model-based ones of the same-named set."""

    name: str
    size: int
    n_draws: int
    metrics: dict[str, float]
    spread: dict[str, dict[str, float]]
    lm_metrics: dict[str, float] | None = optional()
    lm_spread: dict[str, dict[str, float]] | None = optional()
    lm_n_draws: int | None = optional()


@dataclass
class SeedAblation:
    """One seed's ablation table, and its tests of the reconstruction and prediction claims (kept in memory)."""

    seed: int
    sets_note: str
    fvu_note: str
    zero_reconstruction: str
    lm_loss: str
    """"ok", or why the model-based ablation did not run."""
    lm_metric: str | None
    rows: list[AblationTableRow]
    tests: dict[str, dict[str, Any]] = internal(default_factory=dict)
    """"fvu", and the model-based metric's key (or "prediction" with the reason it did not run): per-seed tests."""


@dataclass
class AblationTable:
    """ablation.json: the first seed's rows, and every seed's table."""

    rows: list[AblationTableRow]
    base_seed: int
    per_seed: list[SeedAblation]
    lm_loss: str
    lm_metric: str | None
    stats: list[AblationStats | None] = internal(default_factory=list)
    """Per seed: the sufficient statistics of the exact FVU of any set (None above the dense co-activation cap)."""


class _Recorder:
    """Wraps a set metric so the table can be rebuilt from the very sets a verdict was computed on."""

    def __init__(self, fn: SetMetric, key: str) -> None:
        self.fn, self.key = fn, key
        self.masks: Tensor | None = None
        self.results: list[dict[str, float]] = []

    def __call__(self, masks: Tensor) -> Tensor:
        self.masks, self.results = masks, self.fn(masks)
        return torch.tensor([r[self.key] for r in self.results], dtype=torch.float64)

    def rows(self, n_draws: int) -> list[AblationRow]:
        """The table: the fixed sets of `ablation_test` (`FIXED_SETS`), then the two random families."""
        assert self.masks is not None
        names = (list(FIXED_SETS)[: self.masks.shape[0]] + [f"random_like_stable/{i}" for i in range(n_draws)]
                 + [f"random_like_unstable/{i}" for i in range(n_draws)])
        sets = [AblationSet(name, name.split("/")[0], m) for name, m in zip(names, self.masks)]
        return ablation_table(sets, {name: r for name, r in zip(names, self.results)})


def _fvu_fn(inputs: Inputs, i: int, stats: AblationStats | None) -> tuple[SetMetric, str]:
    """(set metric, note) of the FVU: exact from the sufficient statistics, else decoded set by set."""
    if stats is not None:
        return (lambda masks: [{"fvu": float(v)} for v in stats.fvu(masks)],
                f"exact FVU of every set from one encode of the analysis tokens ({stats.count} rows)")

    def decode_each(masks: Tensor) -> list[dict[str, float]]:
        sets = [AblationSet(f"s{j}", "s", m) for j, m in enumerate(masks)]
        v = ablation_fvu(inputs.saes[i], inputs.held_out.acts(inputs.hookpoint), sets)
        return [{"fvu": v[s.name]} for s in sets]

    return decode_each, "FVU decoded set by set on the held-out rows (dictionary above the dense cap)"


def _lm_fn(inputs: Inputs, i: int) -> tuple[SetMetric | None, str, str]:
    """(set metric, metric name, note) of the model-based ablation: LM loss (causal) or output recovered."""
    data, opts = inputs.held_out, inputs.opts
    if not opts.lm_loss:
        return None, "", "not asked (the model-based ablation runs the model: --lm-loss)"
    if not (data.has_tokens and data.loaded is not None):
        return None, "", "unavailable: the run's activations do not come from a language model loaded here"
    if getattr(data.loaded, "is_causal", True):
        fn, key = ablation_lm_loss, "loss_recovered"
    else:
        fn, key = ablation_output_recovered, "output_recovered"

    def evaluate(masks: Tensor) -> list[dict[str, float]]:
        sets = [AblationSet(f"s{j}", "s", m) for j, m in enumerate(masks)]
        chunks = data.chunks[: opts.lm_max_chunks] if opts.lm_max_chunks > 0 else data.chunks
        res = fn(inputs.saes[i], data.loaded.model, chunks, inputs.hookpoint, sets, hook_input=inputs.hook_input,
                 batch_size=opts.lm_batch_size, special_ids=data.special_ids, progress=opts.progress)
        return [dict(res[s.name]) for s in sets]

    return evaluate, key, "ok"


def seed_ablation(inputs: Inputs, i: int, groups: StabilityGroups, stats: AblationStats | None, strata: Tensor,
                  generator: torch.Generator, *, skip_model: str = "") -> SeedAblation:
    """Seed i's ablation: its table and its tests of the reconstruction and prediction claims.

    Stable / unstable sets are their alive latents; each is compared with `opts.n_random` random sets matched
    on firing frequency (`strata`). FVU is exact from sufficient statistics over the analysis tokens; the
    model-based metric (LM loss recovered for a causal LM, output recovered otherwise) runs on the held-out
    chunks with `min(n_random, n_random_lm)` draws, unless `skip_model` gives a reason not to.
    """
    opts = inputs.opts
    fvu_fn, fvu_note = _fvu_fn(inputs, i, stats)
    fvu = _Recorder(fvu_fn, "fvu")
    stable, unstable = masks(groups)
    tests = {"fvu": ablation_test(fvu, stable, unstable, strata, opts.n_random, generator)}
    if fvu.masks is None:  # no test (an empty group): the table still shows the fixed sets
        alive = strata >= 0
        fixed = torch.stack([torch.zeros_like(alive), stable & alive, unstable & alive,
                             ~(stable & alive), ~(unstable & alive), torch.ones_like(alive)])
        fvu(fixed)
        rows = fvu.rows(0)
    else:
        rows = fvu.rows(opts.n_random)
    lm_rows: list[AblationRow] = []
    fn, key, lm_note = _lm_fn(inputs, i) if not skip_model else (None, "", skip_model)
    if fn is not None:
        draws = max(1, min(opts.n_random, opts.n_random_lm))
        lm = _Recorder(fn, key)
        try:
            tests[key] = ablation_test(lm, stable, unstable, strata, draws, generator, higher_is_worse=False)
            if lm.masks is None:  # no test (an empty group): the fixed sets still give the SAE's own LM loss
                lm(fvu.masks)
                draws = 0
            lm_rows = lm.rows(draws)
        except DataError as err:
            lm_note = f"unavailable: {err}"
            tests[key] = {"p": math.nan, "note": lm_note}
    else:
        tests["prediction"] = {"p": math.nan, "note": f"model-based ablation {lm_note}"}
    return SeedAblation(
        inputs.seeds[i],
        "stable/unstable: their latents alive on the analysis tokens; all_but_stable/unstable: every latent "
        "ablated but that set (what it carries alone); random sets matched on firing frequency "
        f"({opts.match}, {opts.freq_bins} bins), drawn from the alive latents of each bin",
        fvu_note, "ablating every latent leaves x̂ = b_dec (the 'all' row)", lm_note, key or None,
        merge_rows(rows, lm_rows), tests=tests)


def merge_rows(rows: list[AblationRow], lm_rows: list[AblationRow]) -> list[AblationTableRow]:
    """FVU rows, with the model metrics of the same-named sets (their draw counts may differ)."""
    by_name = {r.name: r for r in lm_rows}
    merged = []
    for r in rows:
        row = AblationTableRow(**asdict(r))
        other = by_name.get(r.name)
        if other:
            row.metrics, row.spread = {**r.metrics, **other.metrics}, {**r.spread, **other.spread}
            row.lm_metrics, row.lm_spread, row.lm_n_draws = other.metrics, other.spread, other.n_draws
        merged.append(row)
    return merged


class AblationAnalysis:
    """Sufficient statistics of every seed's FVU under any ablation, accumulated batch by batch; then the tables."""

    name: ClassVar[str] = "ablation"
    needs: ClassVar[tuple[str, ...]] = ("triggers",)

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.stats = [AblationStats(sae.W_dec.detach().float().cpu()) if sae.num_latents <= MAX_DENSE_LATENTS
                      else None for sae in inputs.saes]

    def update(self, batch: Batch) -> None:
        for sae, stats, code in zip(self.inputs.saes, self.stats, batch.codes):
            if stats is not None:
                stats.update(batch.x.cpu(), code.code.values.detach().cpu(), code.code.indices.cpu(),
                             sae.decode(code.code).detach().cpu())

    def result(self, done: Any) -> AblationTable:
        inp = self.inputs
        per_seed = [seed_ablation(inp, i, g, stats, strata, gen) for i, (g, stats, strata, gen)
                    in enumerate(zip(inp.groups, self.stats, done.triggers.strata, inp.generators))]
        first = per_seed[0]
        return AblationTable(first.rows, inp.seeds[0], per_seed, first.lm_loss, first.lm_metric, stats=self.stats)
