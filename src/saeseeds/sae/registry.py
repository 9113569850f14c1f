"""The architecture registry: name → `ArchitectureSpec`. Each architecture module registers its own spec.

The built-ins (topk, batchtopk, relu, jumprelu) register when `saeseeds.sae` is imported (its `__init__` imports
their modules first, in that order). A new architecture is one module that calls `register_architecture(name,
spec)` (tests/sae/test_registry.py defines one outside the package). The config layer never imports this module:
it validates `[[sae]]` fields through its seam, `saeseeds.config.architectures`, which the package wires to
`registered()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from saeseeds.errors import ConfigError
from saeseeds.sae.spec import ArchitectureSpec

_REGISTRY: dict[str, ArchitectureSpec] = {}


def register_architecture(name: str, spec: ArchitectureSpec, *, replace: bool = False) -> ArchitectureSpec:
    """Make `spec` available as `SaeConfig.architecture = name`; re-registering a name needs `replace=True`."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"architecture name {name!r} is invalid; allowed: letters, digits, '-' and '_'")
    if name in _REGISTRY and _REGISTRY[name] is not spec and not replace:
        raise ConfigError(f"architecture {name!r} is already registered; pass replace=True to override it")
    _REGISTRY[name] = spec
    return spec


def unregister_architecture(name: str) -> None:
    """Remove a registered architecture (e.g. one a test registered); unknown names raise ConfigError."""
    get_architecture(name)
    del _REGISTRY[name]


def registered() -> Mapping[str, ArchitectureSpec]:
    """Every registered spec by name, built-ins first, in registration order (a read-only view)."""
    return MappingProxyType(_REGISTRY)


def get_architecture(name: str) -> ArchitectureSpec:
    """The spec registered as `name`; an unknown name raises ConfigError listing the registered ones."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(
            f"architecture = {name!r} is not registered; allowed: one of {', '.join(architecture_names())}"
        )
    return spec


def architecture_names() -> tuple[str, ...]:
    """Registered architecture names, built-ins first, in registration order."""
    return tuple(_REGISTRY)


def architecture_for_alias(fmt: str, alias: str) -> str | None:
    """Our architecture for a foreign format's name (`fmt` 'saelens' or 'dictionary_learning'), None if unsupported."""
    return next((name for name, spec in _REGISTRY.items() if alias in _foreign_names(spec, fmt)), None)


def aliases(fmt: str) -> tuple[str, ...]:
    """Every foreign name of format `fmt` that some registered architecture accepts."""
    return tuple(alias for spec in _REGISTRY.values() for alias in _foreign_names(spec, fmt))


def _foreign_names(spec: ArchitectureSpec, fmt: str) -> tuple[str, ...]:
    """The names under which format `fmt` stores `spec`'s architecture."""
    if fmt == "saelens":
        return spec.saelens_names
    if fmt == "dictionary_learning":
        return spec.dictionary_learning_classes
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected saelens or dictionary_learning")
