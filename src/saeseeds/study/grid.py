"""Expand a study's axes into grid points (one `[[sae]]` table each) and group them into training passes.

Every pass is one ordinary `RunConfig`: all its grid points and hookpoints train in lockstep on one activation
stream, so one LM pass (or one read of the cache) serves them; milestones become `train.milestones`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from saeseeds.config import RunConfig, SaeConfig
from saeseeds.config.architectures import has_sparsity_penalty
from saeseeds.config.study import StudyConfig
from saeseeds.errors import ConfigError

CACHE_NEEDED = ("lm",)
"""Sources that would re-run the language model in every pass."""


@dataclass(frozen=True)
class GridPoint:
    """One SAE configuration of the study (trained at every hookpoint and seed)."""

    name: str
    architecture: str
    num_latents: int
    """0 when the size follows expansion_factor x d_in (resolved from run.json later)."""
    expansion_factor: int
    k: int | None
    """k of a TopK-like architecture, or the L0 target of a penalised one under match_l0; None otherwise."""
    target_l0: float | None
    sae: SaeConfig

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (without the full SaeConfig)."""
        return {"name": self.name, "architecture": self.architecture, "num_latents": self.num_latents,
                "expansion_factor": self.expansion_factor, "k": self.k, "target_l0": self.target_l0}


def uses_k(architecture: str) -> bool:
    """True for architectures whose sparsity is k (no sparsity penalty): topk, batchtopk."""
    return not has_sparsity_penalty(SaeConfig(architecture=architecture))


def _templates(study: StudyConfig, base: RunConfig) -> list[SaeConfig]:
    if not study.architecture:
        return [copy.deepcopy(s) for s in base.saes]
    out = []
    for arch in study.architecture:
        found = next((s for s in base.saes if s.architecture == arch), None)
        out.append(copy.deepcopy(found) if found is not None else SaeConfig(architecture=arch))
    return out


def grid_points(study: StudyConfig, base: RunConfig) -> list[GridPoint]:
    """Every (architecture template, num_latents, k) of the study (design "grid"), or those at most one axis
    away from the first values (design "star"), named `<arch>-n<N>-k<k>` (penalised
    architectures: `<arch>-n<N>-l0<k>` when matched, `<arch>-n<N>` otherwise; `x<E>` for expansion sizes)."""
    points: list[GridPoint] = []
    for a, template in enumerate(_templates(study, base)):
        arch = template.architecture
        sizes = study.num_latents or [template.num_latents]
        ks: list[int | None]
        if uses_k(arch):
            ks = list(study.k or [template.k])
        elif study.match_l0:
            ks = list(study.k or [template.k])
        else:
            ks = [None]
        for i, n in enumerate(sizes):
            size = f"n{n}" if n > 0 else f"x{template.expansion_factor}"
            for j, k in enumerate(ks):
                if study.design == "star" and (a > 0) + (i > 0) + (j > 0) > 1:
                    continue  # a star varies one axis at a time from the centre (the first values)
                target = float(k) if (k is not None and not uses_k(arch)) else None
                suffix = "" if k is None else (f"-k{k}" if uses_k(arch) else f"-l0{k}")
                name = f"{arch}-{size}{suffix}"
                sae = replace(template, name=name, num_latents=n)
                if uses_k(arch):
                    sae = replace(sae, k=int(k))  # type: ignore[arg-type]
                elif target is not None:
                    sae = replace(sae, target_l0=target)
                points.append(GridPoint(name, arch, n, template.expansion_factor, k, target, sae))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ConfigError(f"study: the grid repeats a configuration ({', '.join(names)}); make the axes distinct")
    return points


def recipe_points(study: StudyConfig, base: RunConfig) -> list[GridPoint]:
    """design "recipes": every base [[sae]] table is one point named by its `name`, all at one dictionary size
    (`study.num_latents`, else the tables' common size) and one matched L0 k (`study.k`, else the first
    TopK-like table's k): k for TopK-like architectures, `target_l0 = k` (the L0 controller) for penalised ones."""
    tables = base.saes
    if len(tables) < 2:
        raise ConfigError(f"saes: {len(tables)} [[sae]] table(s); a recipe comparison needs at least two recipes")
    for i, table in enumerate(tables):
        if not table.name:
            raise ConfigError(f"saes[{i}].name: empty; a recipe comparison names every [[sae]] table (its recipe)")
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ConfigError(f"saes: names {names} repeat; every recipe needs its own name")
    k = int(study.k[0]) if study.k else int(next((t.k for t in tables if uses_k(t.architecture)), tables[0].k))
    points = []
    for table in tables:
        sae = replace(table, num_latents=int(study.num_latents[0])) if study.num_latents else copy.deepcopy(table)
        if uses_k(sae.architecture):
            sae = replace(sae, k=k)
            target = None
        else:
            sae = replace(sae, target_l0=float(k))
            target = float(k)
        points.append(GridPoint(sae.name, sae.architecture, sae.num_latents, sae.expansion_factor, k, target, sae))
    sizes = {p.name: (p.num_latents or f"x{p.expansion_factor}") for p in points}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"saes: the recipes differ in size ({', '.join(f'{n}: {v}' for n, v in sizes.items())}); "
                          "allowed: one size for all (set study.num_latents = [N] or the same num_latents)")
    return points


def reference_point(study: StudyConfig, points: list[GridPoint]) -> GridPoint:
    """The recipe the others are judged against: `study.reference`, else the first topk point."""
    if study.reference:
        found = [p for p in points if p.name == study.reference]
        if not found:
            raise ConfigError(f"study.reference = {study.reference!r} is not a [[sae]] name; allowed: one of "
                              f"{', '.join(p.name for p in points)}")
        return found[0]
    topk = [p for p in points if p.architecture == "topk"]
    if not topk:
        raise ConfigError("study.reference: empty and no [[sae]] table is topk; name the reference recipe")
    return topk[0]


LONG_SUFFIX = "-long"
"""Name suffix of the reference recipe's long single seed (study.long_seed)."""


def long_seed_config(cfg: RunConfig, point: GridPoint) -> RunConfig:
    """The run config of the long single seed: the reference recipe, the pass's first seed, trained for the
    compute of all S seeds (S x train.num_tokens) on the same stream continued (LM sources: S x lm.epochs)."""
    seeds = len(cfg.train.seeds)
    out = copy.deepcopy(cfg)
    out.saes = [replace(copy.deepcopy(point.sae), name=point.name + LONG_SUFFIX)]
    out.train.seeds = [cfg.train.seeds[0]]
    out.train.num_tokens = cfg.train.num_tokens * seeds
    out.train.milestones = [1.0]
    if out.data.source == "lm":
        out.lm.epochs = cfg.lm.epochs * seeds
    out.validate()
    return out


def pass_configs(study: StudyConfig, base: RunConfig) -> list[tuple[RunConfig, list[GridPoint]]]:
    """The run config of each training pass and the grid points it trains (validated)."""
    points = recipe_points(study, base) if study.design == "recipes" else grid_points(study, base)
    if study.design == "recipes":
        reference_point(study, points)  # a bad reference fails before anything runs
    size = study.configs_per_pass or len(points)
    chunks = [points[i:i + size] for i in range(0, len(points), size)]
    if len(chunks) > 1 and base.data.source in CACHE_NEEDED:
        raise ConfigError(
            f"study.configs_per_pass = {study.configs_per_pass} splits the grid into {len(chunks)} passes, and "
            f"data.source = {base.data.source!r} would run the language model once per pass; allowed: write the "
            "activations once with `saeseeds cache` and set data.source = \"cache\", or configs_per_pass = 0"
        )
    out = []
    for chunk in chunks:
        cfg = copy.deepcopy(base)
        cfg.saes = [copy.deepcopy(p.sae) for p in chunk]
        if study.hookpoints:
            cfg.lm.hookpoints = list(study.hookpoints)
        if study.seeds:
            cfg.train.seeds = list(study.seeds)
        cfg.train.milestones = study.milestone_fractions()
        if study.design == "recipes" and cfg.data.source in ("lm", "cache") and len(cfg.lm.hookpoints) > 1:
            raise ConfigError(f"lm.hookpoints: {cfg.lm.hookpoints} holds {len(cfg.lm.hookpoints)} hookpoints; a "
                              "recipe comparison compares recipes at one layer (set study.hookpoints = [one])")
        cfg.validate()
        out.append((cfg, chunk))
    if len(out[0][0].train.seeds) < 2:
        raise ConfigError("study: train.seeds has one seed; a study compares at least two (set study.seeds)")
    return out
