"""Generic dict <-> dataclass coercion for TOML tables and `--section.field value` CLI overrides, naming bad fields."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from saeseeds.errors import ConfigError

T = TypeVar("T")
log = logging.getLogger(__name__)


class CliText(str):
    """A value typed after a `--section.field` flag: text that may be read as a number, a boolean or a list.

    A string from a TOML file is typed data: `k = "8"` is refused (the file says text where a number belongs).
    """


def to_dict(cfg: Any) -> dict[str, Any]:
    """Serialise a config dataclass to plain JSON/TOML-compatible values."""
    return dataclasses.asdict(cfg)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number"}
"""How an error names what a field of each scalar type holds."""


def _type_name(tp: Any) -> str:
    """Readable name of an annotation, for error messages."""
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting where unambiguous (int → float, str → number)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {str(value)!r} is not one of {', '.join(map(repr, allowed))}")
        return str(value) if isinstance(value, str) else value
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(get_args(tp)):
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if isinstance(value, CliText):
            value = [CliText(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner, *rest) = get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if isinstance(value, str) and not isinstance(value, CliText) and tp in (bool, int, float):
        raise ConfigError(f"{where}: expected {_EXPECTED[tp]}, got the string {value!r} (write it without quotes)")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover


def _hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations of dataclass `cls` (its module's names, for `from __future__` strings)."""
    module = sys.modules[cls.__module__]
    return get_type_hints(cls, globalns=vars(module) | vars(typing))


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`; an unknown key or a mistyped value raises ConfigError naming it."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(names))}"
        )
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Apply CLI flags `--section.field value` (or `--section.field=value`); `--saes.N.field` or `--sae.field` (all)."""
    data = to_dict(cfg)
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(overrides):
        flag = overrides[i]
        if not flag.startswith("--") or "." not in flag:
            raise ConfigError(
                f"unrecognised argument {flag!r}: overrides look like --train.lr 1e-3 or --saes.0.k 16"
            )
        if "=" in flag:
            key, value = flag[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(overrides):
                raise ConfigError(f"override {flag} needs a value")
            key, value = flag[2:], overrides[i + 1]
            i += 2
        pairs.append((key, value))
    for key, value in pairs:
        parts = [part if part.lstrip("-").isdigit() else part.replace("-", "_") for part in key.split(".")]
        if parts[0] == "sae":
            targets = [["saes", str(j), *parts[1:]] for j in range(len(data["saes"]))]
        else:
            targets = [parts]
        for path in targets:
            _set_path(data, path, CliText(value), key)
    out = from_dict(type(cfg), data, "overrides")
    _say_single_seed(pairs)
    return out


def _say_single_seed(pairs: list[tuple[str, str]]) -> None:
    """`--train.seeds 3` is the list [3], one seed, not a count of three (docs/cli.md): a warning says so."""
    for key, value in pairs:
        count = int(value) if value.strip().isdigit() else 0
        if key.replace("-", "_") == "train.seeds" and count >= 2:  # seed 0 or 1 alone reads the same either way
            example = ",".join(map(str, range(count))) if count <= 8 else "0,1,2,... (comma-separated)"
            log.warning("--train.seeds %d is a list of seeds, not a count: one seed (seed %d) is trained; for %d "
                        "seeds give the list, e.g. --train.seeds %s", count, count, count, example)


def _set_path(data: dict[str, Any], path: list[str], value: str, key: str) -> None:
    """Set the leaf `path` of the nested dict/list `data` to `value`; an unknown step raises ConfigError."""
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                allowed = f"0 to {len(node) - 1}" if node else "none: the list is empty"
                raise ConfigError(f"--{key}: index {part} is out of range; allowed: {allowed} (counting from 0, "
                                  f"{len(node)} item(s))")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ConfigError(f"--{key}: unknown section {part!r}")
    last = path[-1]
    if not isinstance(node, dict) or last not in node:
        known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
        raise ConfigError(f"--{key}: unknown field {last!r}; known: {known}")
    node[last] = value
