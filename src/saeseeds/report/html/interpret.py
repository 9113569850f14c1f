"""An interpret output in the report: its explainer, each group's detection scores, the claims, and the
explanations shown on the latent pages of the cross-seed results it interpreted (read from its files:
interpret.json, explanations.csv, scores.csv; docs/formats.md, "Interpretation")."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from saeseeds.records import resolve_path
from saeseeds.report.html.blocks import Cell, Note, Section, Table, cell, fmt
from saeseeds.report.html.claims import anchor, claim_blocks
from saeseeds.report.html.discover import Output
from saeseeds.report.html.generic import read_json

Explained = dict[tuple[str, int], dict[str, str]]
"""(seed name, latent) → its explanations.csv row, with scores.csv's columns for a sampled latent."""


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def read_explanations(directory: Path) -> dict[str, Explained]:
    """Per set label, every latent an interpret output explained (with its scores when it was scored)."""
    scores = {(r["set"], r["seed"], r["latent"]): r for r in _rows(directory / "scores.csv")}
    out: dict[str, Explained] = {}
    for r in _rows(directory / "explanations.csv"):
        key = (r["set"], r["seed"], r["latent"])
        out.setdefault(r["set"], {})[(r["seed"], int(r["latent"]))] = {**r, **scores.get(key, {})}
    return out


def explanation_index(outputs: Iterable[Output]) -> dict[Path, tuple[str, Explained]]:
    """Cross-seed result directory → (explainer label, its latents' explanations), from every interpret output found."""
    index: dict[Path, tuple[str, Explained]] = {}
    for out in outputs:
        if out.kind != "interpret":
            continue
        record = read_json(out.path / "interpret.json") or {}
        explainer = record.get("explainer") or {}
        label = f"{explainer.get('name', '?')} ({explainer.get('label', '')})"
        explained = read_explanations(out.path)
        for name, entry in (record.get("sets") or {}).items():
            if isinstance(entry, dict) and entry.get("cross_seed"):
                index[resolve_path(entry["cross_seed"], out.path).resolve()] = (label, explained.get(name, {}))
    return index


def interpret_section(out: Output, rel: str, latents: Any) -> Section:
    """The explainer, each configuration's group scores and claims, and its latent pages with explanations."""
    record = read_json(out.path / "interpret.json") or {}
    explainer = record.get("explainer") or {}
    sec = Section(anchor(rel), f"Interpretation · {rel}", "interpret", str(out.path))
    lexical = " — a lexical baseline: token and n-gram explanations, no language model" if explainer.get(
        "lexical") else ""
    sec.blocks.append(Note(f"Explainer: {explainer.get('name', '?')}{lexical}. Detection AUROC on held-out windows "
                           "the explainer never saw, against windows of matched token frequency "
                           "(docs/definitions.md, \"Interpretability\")."))
    for name, entry in (record.get("sets") or {}).items():
        rows = []
        for group, g in (entry.get("summary") or {}).items():
            n = sum(int(p.get("n") or 0) for p in g.get("per_seed", []))
            rows.append([cell(group), Cell(f"{fmt(g.get('detection_auroc_mean'))} ± {fmt(g.get('detection_auroc_sd'))}",
                                           "num"), cell(n)])
        sec.blocks.append(Table(["group", "detection AUROC (mean ± sd over seeds)", "latents scored"], rows,
                                f"Detection by group · {name}", "groups frequency-matched pairwise"))
        sec.blocks.extend(claim_blocks(entry.get("claims") or {}, name))
        if entry.get("cross_seed"):
            set_dir = resolve_path(entry["cross_seed"], out.path)
            sec.subsections.append(Section(anchor(f"{rel}-latents-{name}"), f"Latents with explanations · {name}",
                                           "latents", str(set_dir), latents(set_dir)))
        else:
            sec.blocks.append(Note(f"{name}: the cross-seed result was computed by interpret and not stored, so no "
                                   "latent page (give interpret a compare output to have one)."))
    return sec
