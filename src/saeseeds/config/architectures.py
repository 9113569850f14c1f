"""Config's seam to the architectures: the registered names and each one's own check of the `[[sae]]` fields it uses.

The registry lives with the model (`saeseeds.sae.registry`; each architecture module registers its spec there).
Config sits below the model and imports nothing from it: the package wires this seam to the registry when
`saeseeds` is imported (`provide_architectures`, in `saeseeds/__init__.py`), and the model layer loads only when
a config is first validated. Anything with `validate` and `sparsity_penalty` (an `ArchitectureSpec` is one)
answers here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from saeseeds.errors import ConfigError

SaeConfig = Any
"""What the knobs receive: a `saeseeds.config.schema.SaeConfig` (named loosely here, because schema imports this
seam and a type-only import back would tie the two into a circle)."""


class ArchitectureKnobs(Protocol):
    """What config asks of an architecture: its checks of the fields it reads, and whether it has a sparsity
    penalty (only a penalty can be steered to a target L0)."""

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None: ...

    def sparsity_penalty(self, cfg: SaeConfig) -> object | None: ...


_provider: Callable[[], Mapping[str, ArchitectureKnobs]] | None = None


def provide_architectures(provider: Callable[[], Mapping[str, ArchitectureKnobs]]) -> None:
    """Install where the registered architectures come from (called once, by the package, at import)."""
    global _provider
    _provider = provider


def _registered() -> Mapping[str, ArchitectureKnobs]:
    """Every registered architecture by name, in registration order (the provider loads the model layer)."""
    if _provider is None:  # `import saeseeds` (which every saeseeds import runs first) installs it
        raise RuntimeError("no architecture registry is wired to saeseeds.config")
    return _provider()


def architecture_names() -> tuple[str, ...]:
    """Registered architecture names, built-ins first."""
    return tuple(_registered())


def architecture_knobs(name: str) -> ArchitectureKnobs:
    """The architecture registered as `name`; an unknown name raises ConfigError listing the registered ones."""
    specs = _registered()
    if name not in specs:
        raise ConfigError(f"architecture = {name!r} is not registered; allowed: one of {', '.join(specs)}")
    return specs[name]


def has_sparsity_penalty(cfg: SaeConfig) -> bool:
    """Whether `cfg`'s architecture sets its sparsity by a penalty weight (relu, jumprelu), not by k (topk,
    batchtopk); only a penalty can be steered to a target L0."""
    return architecture_knobs(cfg.architecture).sparsity_penalty(cfg) is not None
