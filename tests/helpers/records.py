"""Walk an output tree: every JSON saeseeds wrote names its schema and version, and none names a place inside the
tree by its absolute path (so the tree can be moved)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saeseeds.records import NOT_STAMPED, SCHEMA_NAME
from saeseeds.sae.checkpoint import CFG_FILE, EXTRA_FILE
from saeseeds.version import __version__

INPUTS = ("config", "lm_config")
"""Keys holding a command's inputs as given (a RunConfig, its [lm] table): their paths are the user's, not ours."""


def saeseeds_json(root: Path) -> list[Path]:
    """Every *.json under `root` (hidden ones too) but those of NOT_STAMPED folders and a checkpoint's sparsify-only
    cfg.json (its stamp is in the saeseeds.json beside it: sparsify warns about any key it does not know)."""
    return sorted(p for p in root.rglob("*.json") if not set(p.relative_to(root).parts[:-1]) & set(NOT_STAMPED)
                  and not (p.name == CFG_FILE and (p.parent / EXTRA_FILE).is_file()))


def schemas(root: Path) -> dict[str, str]:
    """File (relative to `root`) → its `schema`, for every JSON `saeseeds_json` finds."""
    return {str(p.relative_to(root)): str(_load(p).get("schema")) for p in saeseeds_json(root)}


def unstamped(root: Path) -> list[str]:
    """The JSON files under `root` without a well-formed `schema` or without this version's `saeseeds_version`."""
    bad = []
    for path in saeseeds_json(root):
        data = _load(path)
        if not SCHEMA_NAME.match(str(data.get("schema", ""))) or data.get("saeseeds_version") != __version__:
            bad.append(f"{path.relative_to(root)}: schema {data.get('schema')!r}, "
                       f"saeseeds_version {data.get('saeseeds_version')!r}")
    return bad


def absolute_paths(root: Path) -> list[str]:
    """`file: key = value` for every string in the JSON files under `root` (inputs as given aside) that names a
    place inside `root` by its absolute path."""
    prefixes = {str(root.absolute()), str(root.resolve())}
    return [f"{path.relative_to(root)}: {key} = {value}"
            for path in saeseeds_json(root) for key, value in _strings(_load(path))
            if any(value == p or value.startswith(p + "/") for p in prefixes)]


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in INPUTS:
                yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{key}[{i}]")
