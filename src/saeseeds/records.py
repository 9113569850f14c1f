"""saeseeds' own JSON records: each names its `schema` and the `saeseeds_version` that wrote it, and stores paths
relative to the file that holds it, so an output folder reads the same after it is moved (docs/formats.md).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeseeds.atomic import atomic_write_json
from saeseeds.errors import DataError
from saeseeds.version import __version__

SCHEMA_KEY = "schema"
VERSION_KEY = "saeseeds_version"
STAMP_KEYS = (SCHEMA_KEY, VERSION_KEY)
SCHEMA_NAME = re.compile(r"^saeseeds\.[a-z_]+/\d+$")
"""What a schema looks like: `saeseeds.<kind>/<version>`."""
NOT_STAMPED = {
    "wandb": "wandb's own files under <run>/wandb/ (wandb-metadata.json, ...), written by wandb, not saeseeds",
}
"""JSON files inside saeseeds outputs that saeseeds does not write, by the name of a folder they lie under: they
carry no stamp. (Foreign layouts saeseeds does write: SAELens's cfg.json is stamped, its loader drops keys it does
not know; a checkpoint's cfg.json holds sparsify's keys only, since sparsify warns about any other, and its stamp is
in the saeseeds.json beside it.)"""


def stamp(schema: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` with `schema` and `saeseeds_version` first (any earlier values of the two replaced)."""
    if not SCHEMA_NAME.match(schema):
        raise ValueError(f"schema {schema!r} is not of the form saeseeds.<kind>/<version>")
    if not isinstance(record, Mapping):
        raise TypeError(f"a {schema} record must be a JSON object, got {type(record).__name__}")
    return {SCHEMA_KEY: schema, VERSION_KEY: __version__, **{k: v for k, v in record.items() if k not in STAMP_KEYS}}


def write_record(path: str | Path, schema: str, record: Mapping[str, Any], *, indent: int | None = 2) -> Path:
    """Write `record`, stamped (`stamp`), as strict JSON to `path` atomically; returns `path`."""
    atomic_write_json(path, stamp(schema, record), indent=indent)
    return Path(path)


def record_schema(record: Any) -> str | None:
    """The schema a record names under `schema`; None for anything else."""
    if not isinstance(record, Mapping):
        return None
    value = record.get(SCHEMA_KEY)
    return None if value is None else str(value)


def check_schema(record: Any, schema: str, where: str | Path) -> None:
    """DataError naming `where` unless `record` is a `schema` record (newer versions of it: "upgrade saeseeds")."""
    found = record_schema(record)
    if found == schema:
        return
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: holds a JSON {type(record).__name__}, not a saeseeds record ({schema})")
    kind, _, version = schema.rpartition("/")
    found_kind, _, found_version = (found or "").rpartition("/")
    if found_kind == kind and found_version.isdigit() and version.isdigit() and int(found_version) > int(version):
        raise DataError(f"{where}: schema {found!r} is newer than this saeseeds reads ({schema}); upgrade saeseeds")
    raise DataError(f"{where}: schema is {found!r}, expected {schema!r} (another kind of file, or another format)")


def read_record(path: str | Path, schema: str, missing: str) -> dict[str, Any]:
    """The saeseeds record at `path`, which must be a `schema` record; DataError (`missing` when absent) naming it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(missing) from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    check_schema(record, schema, path)
    return record


def relative_path(target: str | Path, base_dir: str | Path) -> str:
    """`target` as a record in `base_dir` stores it: relative to `base_dir` (POSIX separators), or absolute when the
    two share nothing but the filesystem root (another drive, or another top-level tree such as /scratch vs /home)."""
    target_abs, base_abs = os.path.abspath(target), os.path.abspath(base_dir)
    try:
        common = Path(os.path.commonpath([target_abs, base_abs]))
    except ValueError:  # another drive
        return Path(target_abs).as_posix()
    if common == common.parent:
        return Path(target_abs).as_posix()
    return Path(os.path.relpath(target_abs, base_abs)).as_posix()


def resolve_path(value: str | Path, base_dir: str | Path) -> Path:
    """A path read from a record in `base_dir`: a relative one joined to `base_dir`, an absolute one (another
    filesystem tree, `relative_path`) as it is."""
    path = Path(value)
    return path if path.is_absolute() else Path(os.path.normpath(Path(base_dir) / path))
