"""The pieces a report section is made of (tables, figures, claims, latents, notes) as plain data that the
templates render; values are formatted here, once, so every table reads the same.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

HEX = re.compile(r"[0-9a-f]{32,}")
"""A digest (fingerprints, SHA-256): shown in a small monospace font that may break anywhere."""
MAX_JSON_CHARS = 20_000
"""A raw-JSON block longer than this is cut (the file itself holds everything)."""


def fmt(value: Any) -> str:
    """A cell's text: floats to 4 significant digits, booleans yes/no, None and NaN as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (list, tuple, dict)) for v in value):
        text = ", ".join(fmt(v) for v in value[:12])
        return text + (f", … ({len(value)} in all)" if len(value) > 12 else "")
    if isinstance(value, (list, tuple, dict)):
        return short_json(value, 300)
    return str(value)


def pct(value: Any) -> str:
    """A fraction as a percentage with one decimal, as the commands print it (0.05686 → 5.7%); None/NaN → —."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:.1%}"


def pct_spread(mean: Any, sd: Any) -> str:
    """`mean ± sd` of a fraction, both as percentages (5.7% ± 0.5%); the sd left out when unknown."""
    text = pct(mean)
    return text if text == "—" or pct(sd) == "—" else f"{text} ± {pct(sd)}"


def is_fraction_key(key: str) -> bool:
    """Fields named as fractions (`shared_fraction_mean`, `dead_fraction`, `stable_fraction_alive`) are shown as
    percentages, like the commands' output."""
    return "fraction" in key.lower() and not key.lower().endswith("note")


def short_json(value: Any, limit: int = MAX_JSON_CHARS) -> str:
    """Indented JSON of `value`, cut at `limit` characters with a note saying so."""
    text = json.dumps(value, indent=2, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… (cut at {limit:,} of {len(text):,} characters)"
    return text


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


@dataclass
class Cell:
    """One table cell: its text and an optional CSS class (num, yes, no, muted)."""

    text: str
    cls: str = ""


def cell(value: Any) -> Cell:
    """A cell for `value`: numbers right-aligned, digests in a small monospace font."""
    if isinstance(value, bool):
        return Cell(fmt(value), "bool")
    if isinstance(value, (int, float)):
        return Cell(fmt(value), "num")
    if value is None:
        return Cell(fmt(value), "muted")
    text = fmt(value)
    return Cell(text, "mono" if HEX.fullmatch(text) else "")


def keyed_cell(key: str, value: Any) -> Cell:
    """`cell(value)`, with a float of a fraction-named field as a percentage."""
    if is_fraction_key(key) and isinstance(value, float):
        return Cell(pct(value), "num")
    return cell(value)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    note: str = ""
    collapsed: bool = False
    """Shown folded under its caption (long tables the reader opens on demand)."""
    kind: str = "table"


@dataclass
class KeyValues:
    items: list[tuple[str, Cell]]
    caption: str = ""
    kind: str = "kv"


@dataclass
class Figure:
    title: str
    uri: str
    caption: str = ""
    source: str = ""
    wide: bool = False
    """Much wider than tall (several panels): spans the whole row."""
    kind: str = "figure"


@dataclass
class Figures:
    figures: list[Figure]
    caption: str = ""
    wide: bool = False
    """One figure across the whole width (e.g. the training curves' panels)."""
    kind: str = "figures"


@dataclass
class ClaimRow:
    name: str
    verdict: str
    """holds / fails / undetermined."""
    p_value: str
    p_holm: str
    alpha: str
    effect: str
    n: str
    test: str
    reason: str = ""


@dataclass
class Claims:
    rows: list[ClaimRow]
    caption: str = ""
    kind: str = "claims"


@dataclass
class Context:
    activation: str
    before: str
    token: str
    after: str


@dataclass
class Partner:
    seed: str
    latent: str
    cosine: str
    shared: bool
    max_cosine: str
    explanation: str = ""
    """Its explanation, when an interpret output explained it."""


@dataclass
class LatentRow:
    latent: int
    group: str
    """stable / unstable / between."""
    stability: str
    frequency: str
    partners: list[Partner]
    contexts: list[Context]
    search: str = ""
    """Lower-case text the page's filter box matches against."""
    explanation: str = ""
    """Its explanation and score, when an interpret output explained it (`report/html/interpret.py`)."""


@dataclass
class Latents:
    config: str
    anchor: str
    base_seed: str
    note: str
    latents: list[LatentRow]
    contexts_note: str = ""
    kind: str = "latents"
    explainer: str = ""
    """The interpret output's explainer, when its explanations are shown."""


@dataclass
class Details:
    summary: str
    text: str
    kind: str = "details"


@dataclass
class Group:
    """Blocks folded under one summary line (`<details>`): the raw files behind a designed section."""

    summary: str
    blocks: list[Any]
    kind: str = "group"


@dataclass
class Note:
    text: str
    level: str = "info"
    kind: str = "note"


@dataclass
class Section:
    id: str
    title: str
    kind: str
    path: str
    blocks: list[Any] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


def kv(mapping: dict[str, Any], caption: str = "", *, skip: tuple[str, ...] = ()) -> KeyValues:
    """A key/value table of the scalar (and short list) entries of `mapping`."""
    items = [(str(k), keyed_cell(str(k), v)) for k, v in mapping.items() if k not in skip and (
        is_scalar(v) or (isinstance(v, list) and all(is_scalar(x) for x in v)))]
    return KeyValues(items, caption)


def records_table(records: list[dict[str, Any]], caption: str = "", *, max_rows: int = 200,
                  first: str | None = None) -> Table:
    """A table of dicts (columns: the union of their scalar keys, in first-seen order), capped at `max_rows`."""
    columns: list[str] = [first] if first else []
    for rec in records:
        for k, v in rec.items():
            if k not in columns and (is_scalar(v) or (isinstance(v, list) and all(is_scalar(x) for x in v))):
                columns.append(k)
    rows = [[keyed_cell(c, rec.get(c)) for c in columns] for rec in records[:max_rows]]
    note = f"first {max_rows} of {len(records)} rows" if len(records) > max_rows else ""
    return Table(columns, rows, caption, note)


def mapping_table(mapping: dict[str, dict[str, Any]], key: str, caption: str = "") -> Table:
    """A table of a mapping name → record, the name in the first column."""
    return records_table([{key: name, **rec} for name, rec in mapping.items()], caption, first=key)
