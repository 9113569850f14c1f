"""Where the unstable latents point (subspaces.json): span reproducibility across seeds of unstable vs stable vs
random latent sets, spectra of their union, groups of close directions, and the span test of the claim
`unstable_spans_reproducible` (inside the stable span's complement, against data-matched random directions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from saeseeds.align.cross_seed import StabilityGroups
from saeseeds.analysis.subspaces import (
    OverlapSummary,
    close_groups,
    expected_random_mean_cos2,
    pairwise_overlaps,
    random_isotropic_overlaps,
    random_subset_overlaps,
    single_threaded_linalg,
    spectrum,
    summarize_overlaps,
)
from saeseeds.analysis.tables.seam import Batch, Inputs, internal, masks, optional
from saeseeds.analysis.verdicts import (
    DataDirections,
    low_rank_test,
    span_overlap_test,
    stable_complement,
    unit,
)
from saeseeds.errors import DataError

SUBSPACE_DRAWS = 5
"""Cap on the random draws of the descriptive subspace baselines (the verdict has its own matched test)."""


@dataclass
class SpectrumSummary:
    """A set of directions' SVD spectrum (its first 256 energies) and effective ranks."""

    n_vectors: int
    participation_ratio: float
    entropy_rank: float
    rank90: int
    energy: list[float]


@dataclass
class UnionSpectrum:
    """Spectra of every seed's unstable directions together, of random alive latents of the same counts, of the
    stable ones together, and of each seed's unstable ones."""

    unstable: SpectrumSummary
    random_latents_same_counts: SpectrumSummary
    stable: SpectrumSummary
    per_seed_unstable: list[SpectrumSummary]


@dataclass
class GroupRow:
    """One group of close unstable directions (members: (seed, row) pairs, the first 50)."""

    size: int
    n_seeds: int
    rank90: int
    participation_ratio: float
    members: list[Any]


@dataclass
class CloseGroups:
    """Groups of unstable directions (any seeds) joined where |cos| > threshold; the first 200 listed."""

    threshold: float
    n_directions: int
    n_groups: int
    n_cross_seed_groups: int
    n_low_rank_cross_seed: int
    latents_in_cross_seed_groups: int
    groups: list[GroupRow]


@dataclass
class ComplementTest:
    """The configuration-level part of the span test: the stable span's complement, q, the low-rank test."""

    complement: dict[str, Any]
    dim: int
    low_rank: dict[str, Any] | None = optional()


@dataclass
class SubspaceTable:
    """subspaces.json; the span test's per-seed rows kept in memory for the claims."""

    d_in: int
    n_unstable: list[int]
    n_stable: list[int]
    dim: int
    dim_stable: int
    note: str | None = optional()
    dim_note: str | None = optional()
    overlaps: dict[str, OverlapSummary] | None = optional()
    expected_random_mean_cos2: float | None = optional()
    union_spectrum: UnionSpectrum | None = optional()
    groups: CloseGroups | None = optional()
    complement_test: ComplementTest | None = None
    span_rows: list[dict[str, Any]] = internal(default_factory=list)
    """Per seed: the span test's row of `unstable_spans_reproducible` (under the analysis rule)."""
    covariance: Tensor | None = internal(default=None)
    """Activation covariance over the analysis tokens: the data-matched null of the span test."""


class CovarianceAccumulator:
    """Covariance `[d, d]` (float64, centred, divided by n) of rows seen batch by batch."""

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.sums: Tensor | None = None
        self.n = 0

    def update(self, x: Tensor) -> None:
        """Add one batch: its products in float32 (fast), summed over batches in float64."""
        x = x.detach().float().cpu()
        gram, total_x = (x.T @ x).double(), x.double().sum(0)
        self.total = gram if self.total is None else self.total + gram
        self.sums = total_x if self.sums is None else self.sums + total_x
        self.n += x.shape[0]

    def covariance(self) -> Tensor:
        if self.total is None or self.sums is None or self.n == 0:
            raise DataError("analysis: no activations to estimate their covariance from")
        mean = self.sums / self.n
        return self.total / self.n - torch.outer(mean, mean)


def activation_covariance(batches: Sequence[Tensor]) -> Tensor:
    """Covariance `[d, d]` (float64, centred, divided by n) of the rows of the activation batches."""
    acc = CovarianceAccumulator()
    for x in batches:
        acc.update(x)
    return acc.covariance()


def _decoders(saes: Sequence[Any]) -> list[Tensor]:
    return [s.W_dec.detach().double().cpu() for s in saes]


def subspace_table(saes: Sequence[Any], groups: Sequence[StabilityGroups], alive: Sequence[Tensor], *,
                   n_random: int, group_threshold: float, subspace_dim: int, seed: int) -> SubspaceTable:
    """Span reproducibility across seeds of unstable vs stable vs random latent sets, ranks, and groups."""
    gen = torch.Generator().manual_seed(seed + 1)
    decs = _decoders(saes)
    d = decs[0].shape[1]
    unstable = [dec[masks(g)[1] & a] for dec, g, a in zip(decs, groups, alive)]
    stable = [dec[masks(g)[0] & a] for dec, g, a in zip(decs, groups, alive)]
    cap = subspace_dim if subspace_dim > 0 else max(d // 4, 1)
    q = min(min(u.shape[0] for u in unstable), cap)
    q_stable = min(min(s.shape[0] for s in stable), cap)
    table = SubspaceTable(d, [u.shape[0] for u in unstable], [s.shape[0] for s in stable], q, q_stable)
    if q == 0:
        table.note = "some seed has no alive unstable latents; nothing to compare"
        return table
    table.dim_note = (
        f"each set is reduced to its top-{q} principal subspace (q = min(smallest unstable set, cap {cap})); "
        f"random baselines use the same q; stable sets use q_stable = {q_stable} (equal to q when large enough)"
    )
    alive_decs = [dec[a] for dec, a in zip(decs, alive)]
    overlaps = {
        "unstable": summarize_overlaps(pairwise_overlaps(unstable, dim=q)),
        "stable": summarize_overlaps(pairwise_overlaps(stable, dim=min(q, q_stable))) if q_stable else summarize_overlaps([]),
    }
    draws = min(n_random, SUBSPACE_DRAWS)
    subset, iso = [], []
    for i in range(len(decs)):
        for j in range(i + 1, len(decs)):
            subset += random_subset_overlaps(alive_decs[i], alive_decs[j], unstable[i].shape[0], unstable[j].shape[0],
                                             dim=q, draws=draws, generator=gen)
            iso += random_isotropic_overlaps(unstable[i].shape[0], unstable[j].shape[0], d, dim=q, draws=draws,
                                             generator=gen)
    overlaps["random_latents_like_unstable"] = summarize_overlaps(subset)
    overlaps["random_isotropic"] = summarize_overlaps(iso)
    table.overlaps = overlaps
    table.expected_random_mean_cos2 = expected_random_mean_cos2(q, q, d)
    # effective rank of the union of unstable directions across seeds, vs random alive latents of the same counts
    rand_union = torch.cat(
        [a[torch.randperm(a.shape[0], generator=gen)[: u.shape[0]]] for a, u in zip(alive_decs, unstable)]
    )
    table.union_spectrum = UnionSpectrum(_spectrum_summary(torch.cat(unstable)), _spectrum_summary(rand_union),
                                         _spectrum_summary(torch.cat(stable)), [_spectrum_summary(u) for u in unstable])
    table.groups = _close_groups(unstable, group_threshold)
    return table


def _close_groups(unstable: Sequence[Tensor], threshold: float) -> CloseGroups:
    rep = close_groups(unstable, threshold=threshold)
    multi = [g for g in rep.groups if g.n_sets >= 2]
    return CloseGroups(
        rep.threshold, rep.n_directions, len(rep.groups), len(multi), sum(1 for g in multi if g.rank90 < g.size),
        sum(g.size for g in multi),
        [GroupRow(g.size, g.n_sets, g.rank90, g.participation_ratio, g.members[:50]) for g in rep.groups[:200]],
    )


def _spectrum_summary(rows: Tensor) -> SpectrumSummary:
    s = spectrum(rows)
    return SpectrumSummary(s.n_vectors, s.participation_ratio, s.entropy_rank, s.rank90, s.energy[:256])


def span_tests(inputs: Inputs, groups: Sequence[StabilityGroups], alive: Sequence[Tensor], covariance: Tensor
               ) -> tuple[list[dict[str, Any]], ComplementTest]:
    """Per-seed rows of `unstable_spans_reproducible` and its configuration-level part (complement, low rank).

    Inside the orthogonal complement of the stable span (`verdicts.stable_complement`), each seed's alive
    unstable directions are compared with the other seeds' (overlap test, per base seed) and their union's
    effective rank with a null of the same size (low-rank test, once); both nulls are data-matched random
    directions (`verdicts.DataDirections`). A seed's p is max(p_overlap, p_low_rank): both parts must hold.
    """
    opts = inputs.opts
    decs = _decoders(inputs.saes)
    d = decs[0].shape[1]
    stable = [dec[masks(g)[0] & a] for dec, g, a in zip(decs, groups, alive)]
    unstable = [dec[masks(g)[1] & a] for dec, g, a in zip(decs, groups, alive)]
    comp = stable_complement(stable, d)
    d_c = comp.basis.shape[1]
    cap = opts.subspace_dim if opts.subspace_dim > 0 else max(d_c // 4, 1)
    q = min(min(u.shape[0] for u in unstable), cap, d_c)
    info = ComplementTest({"d_in": d, "stable_dim": comp.stable_dim, "stable_dim_wanted": comp.stable_dim_wanted,
                           "dim": d_c, "stable_energy_outside": comp.stable_energy_outside}, q)
    dead = [int((~a).sum()) for a in alive]
    if q == 0:
        note = "some seed has no alive unstable latent" if d_c else "the stable span fills the space"
        return [{"p": math.nan, "note": note, "n_dead": n} for n in dead], info
    projected = [unit(unit(u) @ comp.basis) for u in unstable]  # scaled like the null's directions
    null = DataDirections(covariance, comp.basis)
    low = low_rank_test(projected, null, opts.n_random, torch.Generator().manual_seed(opts.seed * 1000 + 499))
    info.low_rank = low
    rows = []
    for i in range(len(decs)):
        gen = torch.Generator().manual_seed(opts.seed * 1000 + 500 + i)
        ov = span_overlap_test(projected, i, q, null, opts.n_random, gen)
        rows.append({
            "p": max(ov["p"], low["p"]), "p_overlap": ov["p"], "p_low_rank": low["p"],
            "mean_cos2_unstable": ov["mean_cos2_unstable"], "control_mean_cos2": ov["control_mean_cos2"],
            "analytic_random_q_over_dc": q / d_c, "effect": ov["effect"],
            "n_unstable": unstable[i].shape[0], "dim": q, "draws": opts.n_random,
            "p_min": max(ov["p_min"], low["p_min"]), "n_dead": dead[i],
        })
    return rows, info


class SubspaceAnalysis:
    """The activation covariance, accumulated batch by batch; then the span tables and the span test."""

    name: ClassVar[str] = "subspaces"
    needs: ClassVar[tuple[str, ...]] = ("triggers",)

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.covariance = CovarianceAccumulator()

    def update(self, batch: Batch) -> None:
        self.covariance.update(batch.x)

    def result(self, done: Any) -> SubspaceTable:
        inp, alive = self.inputs, done.triggers.alive
        covariance = self.covariance.covariance()
        with single_threaded_linalg():
            rows, spans = span_tests(inp, inp.groups, alive, covariance)
            table = subspace_table(inp.saes, inp.groups, alive, n_random=inp.opts.n_random,
                                   group_threshold=inp.opts.group_threshold, subspace_dim=inp.opts.subspace_dim,
                                   seed=inp.opts.seed)
        table.complement_test, table.span_rows, table.covariance = spans, rows, covariance
        return table
