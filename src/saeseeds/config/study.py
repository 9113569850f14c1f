"""The `[study]` section of a config: the axes of a sweep (sizes, k, architectures, layers, training milestones,
seeds) whose grid `saeseeds study` expands into `[[sae]]` tables of the base run config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saeseeds.config.architectures import architecture_names
from saeseeds.config.checks import (
    check_bool,
    check_choice,
    check_finite_fields,
    check_float,
    check_hookpoint,
    check_int,
    check_seeds,
    fail,
)
from saeseeds.config.coerce import apply_overrides, from_dict
from saeseeds.config.load import read_config_toml
from saeseeds.config.schema import RunConfig
from saeseeds.errors import ConfigError

DESIGNS = ("grid", "star", "recipes")
RECIPE_FIELDS = ("reference", "pooling", "long_seed", "fvu_margin", "alpha")
"""Fields that only a `design = "recipes"` study reads."""


@dataclass
class StudyConfig:
    """Axes of a study; an empty axis takes its value(s) from the base config."""

    architecture: list[str] = field(default_factory=list)
    """Architectures to compare; empty: those of the base [[sae]] tables (each table is the template of its
    architecture's other fields)."""
    num_latents: list[int] = field(default_factory=list)
    """Dictionary sizes; empty: each template's size."""
    k: list[int] = field(default_factory=list)
    """TopK k values (the L0 targets of relu/jumprelu when match_l0); empty: each template's k."""
    hookpoints: list[str] = field(default_factory=list)
    """Layers (module paths) to train on, all from one LM pass; empty: the base lm.hookpoints."""
    milestones: list[float] = field(default_factory=lambda: [1.0])
    """Fractions of the training budget at which the seeds are compared (1.0 is always added)."""
    seeds: list[int] = field(default_factory=list)
    """Seeds of every grid point; empty: train.seeds."""
    match_l0: bool = False
    """Steer each relu/jumprelu SAE's sparsity coefficient so its L0 reaches the k of its grid point
    (the L0 controller, docs/definitions.md "Matched L0")."""
    design: str = "grid"
    """"grid": every combination of architecture, num_latents and k; "star": the first value of each axis is
    the centre, and every other value varies that one axis from the centre (one-axis sweeps, far cheaper);
    "recipes": every base [[sae]] table is one point under its own `name`, all at the one matched L0 `k`
    (docs/study.md, "Recipe comparison")."""
    configs_per_pass: int = 0
    """At most this many [[sae]] configurations train together (one pass each, sharing the activation cache:
    data.source = "cache"); 0 trains the whole grid in one pass."""

    reference: str = ""
    """recipes: the `name` of the recipe every other one is judged against; empty: the first topk table."""
    pooling: bool = False
    """recipes: also pool the reference recipe's seeds (`saeseeds pool`, default options) into <out>/pool."""
    long_seed: bool = False
    """recipes: also train one seed of the reference recipe for the compute of all its seeds (S x the tokens)."""
    fvu_margin: float = 0.01
    """recipes: non-inferiority margin of the verdicts: a recipe's held-out FVU may exceed the reference's by at
    most this (absolute) in every seed."""
    alpha: float = 0.05
    """recipes: level of the verdicts' one-sided sign-flip tests, Holm-adjusted over the recipes."""

    def validate(self, where: str = "study") -> None:
        """Range checks of every axis; a bad one raises ConfigError naming `study.<field>`."""
        check_finite_fields(self, where)
        names = architecture_names()
        for i, arch in enumerate(_list(self.architecture, f"{where}.architecture")):
            if arch not in names:
                raise fail(f"{where}.architecture[{i}]", arch, f"one of {', '.join(names)}", "is not registered")
        for i, n in enumerate(_list(self.num_latents, f"{where}.num_latents")):
            check_int(f"{where}.num_latents[{i}]", n, 1)
        for i, k in enumerate(_list(self.k, f"{where}.k")):
            check_int(f"{where}.k[{i}]", k, 1)
        for i, hook in enumerate(_list(self.hookpoints, f"{where}.hookpoints")):
            check_hookpoint(f"{where}.hookpoints[{i}]", hook, "a module path such as 'encoder.layer.3.output.dense'")
        for i, f in enumerate(_list(self.milestones, f"{where}.milestones")):
            check_float(f"{where}.milestones[{i}]", f, 0.0, 1.0, lo_open=True, note="a fraction of the budget")
        if self.seeds:
            check_seeds(f"{where}.seeds", self.seeds)
            if len(self.seeds) < 2:
                raise fail(f"{where}.seeds", self.seeds, "at least two seeds", "cannot be compared across seeds")
        check_bool(f"{where}.match_l0", self.match_l0)
        check_choice(f"{where}.design", self.design, DESIGNS)
        check_int(f"{where}.configs_per_pass", self.configs_per_pass, 0, note="0 trains the whole grid at once")
        for axis in ("architecture", "num_latents", "k", "hookpoints", "milestones"):
            values = getattr(self, axis)
            if len(set(values)) != len(values):
                raise fail(f"{where}.{axis}", values, "distinct values", "repeats a value")
        self._validate_recipes(where)

    def _validate_recipes(self, where: str) -> None:
        """The recipe fields' ranges, and the axes a recipe comparison fixes (one size, one matched L0)."""
        if not isinstance(self.reference, str):
            raise fail(f"{where}.reference", self.reference, "a [[sae]] name (empty: the first topk table)",
                       "is not a string")
        check_bool(f"{where}.pooling", self.pooling)
        check_bool(f"{where}.long_seed", self.long_seed)
        check_float(f"{where}.fvu_margin", self.fvu_margin, 0.0, 1.0, note="an absolute FVU margin")
        check_float(f"{where}.alpha", self.alpha, 0.0, 1.0, lo_open=True, hi_open=True, note="a test level")
        if self.design != "recipes":
            for name in RECIPE_FIELDS:
                if getattr(self, name) != getattr(StudyConfig, name):
                    raise fail(f"{where}.{name}", getattr(self, name), 'design = "recipes"',
                               f"is read only by a recipe comparison (design is {self.design!r})")
            return
        if self.architecture:
            raise fail(f"{where}.architecture", self.architecture, "an empty list",
                       "is not an axis of a recipe comparison: every [[sae]] table is one recipe")
        for axis, meaning in (("num_latents", "the one dictionary size"), ("k", "the one matched L0")):
            if len(getattr(self, axis)) > 1:
                raise fail(f"{where}.{axis}", getattr(self, axis), f"at most one value ({meaning})",
                           "would make a recipe comparison a grid")
        if len(self.hookpoints) > 1:
            raise fail(f"{where}.hookpoints", self.hookpoints, "at most one hookpoint",
                       "a recipe comparison compares recipes at one layer")

    def milestone_fractions(self) -> list[float]:
        """The milestones, sorted, with 1.0 (the end of training) included."""
        return sorted({float(f) for f in self.milestones} | {1.0})


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(where, value, "a list", "is not a list")
    return value


QUICK_LATENTS = 64
"""--quick: every SAE's dictionary size."""
QUICK_K = 4
"""--quick: the one k (TopK-like) / target L0 (penalised) of every point."""
QUICK_STEPS = 16
"""--quick: optimiser steps of every SAE."""
QUICK_BATCH = 128
"""--quick: the largest batch size."""
QUICK_DOCUMENTS = 400
"""--quick: the most documents an LM source reads (the embedded corpus' first 400 hold ~8K tokens)."""
QUICK_ROWS = 1024
"""--quick: the most held-out tokens (train.eval_tokens, train.store_eval_tokens) and dead-latent window."""


def quick_configs(study: StudyConfig, base: RunConfig) -> tuple[StudyConfig, RunConfig]:
    """`--quick`: the smallest study that still runs every stage (docs/cli.md, "study --quick"): 3 seeds (the first
    three), milestones [1.0], num_latents [64], k [4], batch ≤ 128, 16 steps, ≤ 1,024 held-out tokens, one LM
    epoch over ≤ 400 documents in LM batches of ≤ 8 chunks and ≤ 8 evaluation chunks, ≤ 1,024 init-sample tokens, a checkpoint at the end
    only; Matryoshka prefixes scaled to the new size. (`run_study` also skips compare's per-set figures.)"""
    import copy

    study, base = copy.deepcopy(study), copy.deepcopy(base)
    seeds = list(study.seeds or base.train.seeds)
    study.seeds = seeds[:3] if len(seeds) >= 3 else seeds
    study.milestones = [1.0]
    study.num_latents = [QUICK_LATENTS]
    study.k = [QUICK_K]
    t = base.train
    t.batch_size = min(t.batch_size, QUICK_BATCH)
    t.num_tokens = QUICK_STEPS * t.batch_size
    t.eval_tokens = min(t.eval_tokens, QUICK_ROWS)
    t.store_eval_tokens = min(t.store_eval_tokens, QUICK_ROWS)
    t.dead_tokens_threshold = min(t.dead_tokens_threshold, QUICK_ROWS)
    t.checkpoint_every = QUICK_STEPS
    t.eval_every = 0
    t.lr_warmup_steps = min(t.lr_warmup_steps, 2)
    t.init_sample_tokens = min(t.init_sample_tokens, QUICK_ROWS)  # the sample of data-dependent initialisations
    base.lm.epochs = 1
    base.lm.eval_chunks = min(base.lm.eval_chunks, 8)
    base.lm.max_documents = min(base.lm.max_documents or QUICK_DOCUMENTS, QUICK_DOCUMENTS)
    base.lm.lm_batch_size = min(base.lm.lm_batch_size, 8)  # the LM computes few chunks beyond what is read
    for sae in base.saes:
        sae.lr_warmup_steps = min(sae.lr_warmup_steps, 2)
        prefixes = sae.matryoshka_prefixes
        if prefixes and sae.num_latents > 0:
            scaled = sorted({max(1, round(p * QUICK_LATENTS / sae.num_latents)) for p in prefixes})
            sae.matryoshka_prefixes = [p for p in scaled if p < QUICK_LATENTS] or [QUICK_LATENTS // 2]
        sae.num_latents = QUICK_LATENTS
    return study, base


def load_study_config(path: str | Path, overrides: list[str] | None = None, *,
                      quick: bool = False) -> tuple[StudyConfig, RunConfig]:
    """Read a study config: its `[study]` section and the base run config (every other section), with CLI
    overrides (`--study.k 8,16` for the axes, `--train.lr 1e-3` for the base), shrunk by `quick`
    (`quick_configs`); both validated."""
    path = Path(path)
    data = read_config_toml(path)
    study_data = data.pop("study", None)
    if not isinstance(study_data, dict):
        raise ConfigError(f"{path}: no [study] table; a study config declares its axes there (docs/study.md)")
    study_flags, base_flags = _split_overrides(list(overrides or []))
    study = from_dict(StudyConfig, study_data, f"{path}: study")
    if study_flags:
        study = apply_overrides(_Holder(study), study_flags).study
    base = from_dict(RunConfig, data, str(path))
    if base_flags:
        base = apply_overrides(base, base_flags)
    if quick:
        study, base = quick_configs(study, base)
    study.validate("study")
    base.validate()
    return study, base


@dataclass
class _Holder:
    """Lets `--study.field value` flags reach StudyConfig through the generic override code."""

    study: StudyConfig = field(default_factory=StudyConfig)


def _split_overrides(flags: list[str]) -> tuple[list[str], list[str]]:
    """The `--study.field value` flags and the rest, each kept in order."""
    study: list[str] = []
    base: list[str] = []
    i = 0
    while i < len(flags):
        take = 1 if "=" in flags[i] else 2
        (study if flags[i].startswith("--study.") else base).extend(flags[i:i + take])
        i += take
    return study, base
