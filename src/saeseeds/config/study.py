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

DESIGNS = ("grid", "star")


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
    the centre, and every other value varies that one axis from the centre (one-axis sweeps, far cheaper)."""
    configs_per_pass: int = 0
    """At most this many [[sae]] configurations train together (one pass each, sharing the activation cache:
    data.source = "cache"); 0 trains the whole grid in one pass."""

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

    def milestone_fractions(self) -> list[float]:
        """The milestones, sorted, with 1.0 (the end of training) included."""
        return sorted({float(f) for f in self.milestones} | {1.0})


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(where, value, "a list", "is not a list")
    return value


def load_study_config(path: str | Path, overrides: list[str] | None = None) -> tuple[StudyConfig, RunConfig]:
    """Read a study config: its `[study]` section and the base run config (every other section), with CLI
    overrides (`--study.k 8,16` for the axes, `--train.lr 1e-3` for the base); both validated."""
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
