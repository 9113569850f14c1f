"""Any JSON record or CSV table as report blocks, without knowing its fields: scalars as a key/value table,
lists of records and mappings of records as tables, anything deeper recursed into or shown as raw JSON.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from saeseeds.report.html.blocks import (
    Details,
    Note,
    Table,
    is_scalar,
    keyed_cell,
    kv,
    mapping_table,
    records_table,
    short_json,
)

MAX_DEPTH = 3
MAX_CSV_ROWS = 200


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _flat_share(records: list[dict[str, Any]]) -> float:
    """Share of the records' values that are scalars (or short scalar lists)."""
    values = [v for rec in records for v in rec.values()]
    flat = [v for v in values if is_scalar(v) or (isinstance(v, list) and all(is_scalar(x) for x in v))]
    return len(flat) / max(len(values), 1)


def json_blocks(data: Any, title: str = "", *, skip: tuple[str, ...] = (), depth: int = 0) -> list[Any]:
    """Blocks showing `data` (a parsed JSON value); `skip` names top-level keys left out."""
    if not isinstance(data, dict):
        if _is_records(data):
            return [records_table(data, title)]
        return [Details(title or "value", short_json(data))]
    data = {k: v for k, v in data.items() if k not in skip}
    blocks: list[Any] = []
    scalars = kv(data, title)
    if scalars.items:
        blocks.append(scalars)
    for key, value in data.items():
        name = f"{title} · {key}" if title else str(key)
        if is_scalar(value) or (isinstance(value, list) and all(is_scalar(x) for x in value)):
            continue
        if _is_records(value):
            blocks.append(records_table(value, name))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            if _flat_share(list(value.values())) >= 0.5:
                blocks.append(mapping_table(value, "name", name))
                deeper = {k: {kk: vv for kk, vv in v.items() if not is_scalar(vv) and not (
                    isinstance(vv, list) and all(is_scalar(x) for x in vv))} for k, v in value.items()}
                deeper = {k: v for k, v in deeper.items() if v}
                if deeper and depth < MAX_DEPTH:
                    for sub, rest in deeper.items():
                        blocks.extend(json_blocks(rest, f"{name} · {sub}", depth=depth + 1))
            elif depth < MAX_DEPTH:
                for sub, rest in value.items():
                    blocks.extend(json_blocks(rest, f"{name} · {sub}", depth=depth + 1))
            else:
                blocks.append(Details(name, short_json(value)))
        elif isinstance(value, dict) and depth < MAX_DEPTH:
            blocks.extend(json_blocks(value, name, depth=depth + 1))
        else:
            blocks.append(Details(name, short_json(value)))
    return blocks


def read_json(path: Path) -> Any:
    """Parsed JSON at `path`, None when missing or unreadable (the section of that output says so)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def json_file_blocks(path: Path, *, skip: tuple[str, ...] = ()) -> list[Any]:
    """Blocks for a JSON file, or a warning note when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [Note(f"{path.name}: cannot be read ({err})", "warn")]
    return json_blocks(data, path.name, skip=skip)


def _number(text: str) -> Any:
    """A CSV field as an int or float when it is one (for alignment and formatting), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text if text != "" else None


def csv_table(path: Path) -> Any:
    """A CSV file (header row first) as a table of its first MAX_CSV_ROWS rows."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return Note(f"{path.name}: cannot be read ({err})", "warn")
    if not rows:
        return Note(f"{path.name}: empty", "warn")
    header, body = rows[0], rows[1:]
    names = [*header, *[""] * max((len(r) for r in body), default=0)]
    cells = [[keyed_cell(names[i], _number(v)) for i, v in enumerate(row)] for row in body[:MAX_CSV_ROWS]]
    note = f"first {MAX_CSV_ROWS} of {len(body)} rows" if len(body) > MAX_CSV_ROWS else ""
    return Table(header, cells, path.name, note)
