"""Which saeseeds outputs a directory holds: its own kind and, for a directory of outputs (a demo, a study),
the outputs inside it, so one report covers them all in sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saeseeds.outputs import output_kind
from saeseeds.run_layout import MANIFEST

RUN = "run"
"""Kind given to a run directory (marked by its run.json, not by an output marker)."""
SYNTHETIC = "synthetic"
"""Kind given to a run directory holding a synthetic experiment's report."""
SYNTHETIC_REPORT = "synthetic_report"
MAX_DEPTH = 3
"""How deep below the report's directory outputs are looked for."""
ORDER = ("demo", "study", "pool", RUN, SYNTHETIC, "compare", "analyze", "interpret")
"""Sections of a directory of outputs come in pipeline order; unknown kinds follow, by name."""


@dataclass
class Output:
    """One saeseeds output found on disk, and the outputs nested inside it."""

    kind: str
    path: Path
    children: list[Output] = field(default_factory=list)


def kind_of(path: Path) -> str | None:
    """The kind of output at `path`: its marker's kind, `run`/`synthetic` for a run directory, or None."""
    if (path / MANIFEST).is_file():
        return SYNTHETIC if (path / SYNTHETIC_REPORT).is_dir() else RUN
    return output_kind(path)


def _sort_key(out: Output) -> tuple[int, str]:
    rank = ORDER.index(out.kind) if out.kind in ORDER else len(ORDER)
    return rank, out.path.name


def discover(path: Path, depth: int = 0) -> Output | None:
    """The output at `path` with every output below it (up to MAX_DEPTH levels), or None when there is none.

    A directory that is no output itself but holds some (e.g. several runs side by side) becomes an output of
    kind `collection`.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    kind = kind_of(path)
    children: list[Output] = []
    if depth < MAX_DEPTH and kind not in (RUN, SYNTHETIC):
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            child = discover(sub, depth + 1)
            if child is not None:
                children.append(child)
    if kind is None:
        if not children:
            return None
        if len(children) == 1 and depth > 0:
            return children[0]
        kind = "collection"
    return Output(kind, path, sorted(children, key=_sort_key))


def walk(out: Output) -> list[Output]:
    """`out` and every output nested in it, depth first."""
    found = [out]
    for child in out.children:
        found.extend(walk(child))
    return found
