"""The architecture registry: name → `ArchitectureSpec`; the built-ins (topk, batchtopk, relu, jumprelu) load lazily.

It lives with the schema because the schema validates `[[sae]].architecture` against it: the model layer
(`saeseeds.sae`) registers into it, so no import runs from the config up to the model. It imports nothing heavy
and holds specs without importing their class (`saeseeds.sae.spec.ArchitectureSpec`); callers that need the
full type annotate it (`spec: ArchitectureSpec = get_architecture(name)`). A new architecture is one module
that calls `register_architecture(name, spec)` (see tests/sae/test_registry.py for one defined outside the
package).
"""

from __future__ import annotations

import importlib
from typing import Any

from saeseeds.errors import ConfigError

BUILTIN_MODULES = ("saeseeds.sae.topk", "saeseeds.sae.batchtopk", "saeseeds.sae.relu", "saeseeds.sae.jumprelu")
"""Modules that register the built-in architectures when imported."""

_REGISTRY: dict[str, Any] = {}
"""name → ArchitectureSpec instance."""
_builtins_loaded = False


def _load_builtins() -> None:
    """Import the built-in architecture modules once (each registers itself)."""
    global _builtins_loaded
    if not _builtins_loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True


def register_architecture(name: str, spec: Any, *, replace: bool = False) -> Any:
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


def get_architecture(name: str) -> Any:
    """The spec registered as `name`; an unknown name raises ConfigError listing the registered ones."""
    _load_builtins()
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigError(
            f"architecture = {name!r} is not registered; allowed: one of {', '.join(architecture_names())}"
        )
    return spec


def architecture_names() -> tuple[str, ...]:
    """Registered architecture names, built-ins first, in registration order."""
    _load_builtins()
    return tuple(_REGISTRY)


def architecture_for_alias(fmt: str, alias: str) -> str | None:
    """Our architecture for a foreign format's name (`fmt` 'saelens' or 'dictionary_learning'), None if unsupported."""
    for name, spec in _items():
        if alias in _foreign_names(spec, fmt):
            return name
    return None


def aliases(fmt: str) -> tuple[str, ...]:
    """Every foreign name of format `fmt` that some registered architecture accepts."""
    out: list[str] = []
    for _, spec in _items():
        out.extend(_foreign_names(spec, fmt))
    return tuple(out)


def _foreign_names(spec: Any, fmt: str) -> tuple[str, ...]:
    """The names under which format `fmt` stores `spec`'s architecture."""
    if fmt == "saelens":
        return spec.saelens_names
    if fmt == "dictionary_learning":
        return spec.dictionary_learning_classes
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected saelens or dictionary_learning")


def _items() -> list[tuple[str, Any]]:
    """Registered (name, spec) pairs, built-ins loaded."""
    _load_builtins()
    return list(_REGISTRY.items())
