"""The interpret output (docs/formats.md, "Interpretation"): interpret.json (schema `saeseeds.interpret/1`),
explanations.csv (every latent explained: the sampled ones and their partners) and scores.csv (the sampled ones),
built beside `--out` and swapped in whole; while it runs, `--out` holds the marker and the journal only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from saeseeds.atomic import atomic_dir, atomic_write_text, json_safe
from saeseeds.interpret.journal import JOURNAL_DIR
from saeseeds.outputs import MARKER, check_output_dir, mark_output, output_kind, recover_out
from saeseeds.records import write_record

FORMAT = "saeseeds.interpret/1"
KIND = "interpret"
RESULT = "interpret.json"
CACHE_DIR = ".cache"
"""Responses of an LLM backend (kept in the finished output, so a rerun with --overwrite asks nothing again)."""
BASE_COLUMNS = ("set", "seed", "latent", "role", "groups", "firing_frequency", "stability_shared",
                "stability_reappears", "explainer", "explanation")
SCORE_COLUMNS = ("detection_auroc", "detection_balanced_accuracy", "detection_threshold", "fuzz_auroc",
                 "fuzz_balanced_accuracy", "n_activating", "n_non_activating")


def unfinished(out: Path) -> bool:
    """An interpret output that was started and not finished (marker, no interpret.json): a rerun continues it."""
    return out.is_dir() and output_kind(out) == KIND and not (out / RESULT).is_file()


def check_out(out: Path, *, overwrite: bool) -> None:
    """Refuse an --out this verb may not write (before anything is read or written)."""
    if unfinished(out):
        recover_out(out)
        return
    check_output_dir(out, KIND, overwrite=overwrite)


def open_out(out: Path) -> None:
    """Create --out (if new) and mark it, so the journal has a home and a rerun recognises it."""
    out.mkdir(parents=True, exist_ok=True)
    if output_kind(out) != KIND:
        mark_output(out, KIND)


def partners_text(partners: Iterable[Mapping[str, Any]]) -> str:
    """`seed1:12 (cos 0.93, shared); seed2:— ` for the CSVs."""
    parts = []
    for p in partners:
        latent = "—" if int(p["latent"]) < 0 else str(p["latent"])
        cos = p.get("cosine")
        extra = f" (cos {cos:.3f}{', shared' if p.get('shared') else ''})" if isinstance(cos, float) and cos == cos else ""
        parts.append(f"{p['seed']}:{latent}{extra}")
    return "; ".join(parts)


def csv_text(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    """CSV of the rows' columns (lists joined by '+', None and NaN empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        out = []
        for col in columns:
            value = json_safe(row.get(col))
            out.append("" if value is None else "+".join(map(str, value)) if isinstance(value, list) else value)
        writer.writerow(out)
    return buf.getvalue()


def write_output(out: Path, record: Mapping[str, Any], rows: list[dict[str, Any]]) -> Path:
    """interpret.json and the two CSVs, swapped in for --out whole (the journal goes with the old directory)."""
    explainer = record["explainer"]["name"]
    table = [{**r, "explainer": explainer, "terms": json.dumps(r.get("detail", {}).get("terms", [])),
              "partners": partners_text(r.get("partners", []))} for r in rows]
    table.sort(key=lambda r: (r["set"], r["seed"], r["latent"]))
    with atomic_dir(out) as tmp:
        mark_output(tmp, KIND)
        write_record(tmp / RESULT, FORMAT, record)
        atomic_write_text(tmp / "explanations.csv", csv_text(table, (*BASE_COLUMNS, "terms", "partners", "note")))
        atomic_write_text(tmp / "scores.csv", csv_text([r for r in table if r["role"] == "sampled"],
                                                       (*BASE_COLUMNS, *SCORE_COLUMNS, "partners")))
        cache = out / CACHE_DIR
        if cache.is_dir():  # last: the responses stay in --out until the new output is complete
            os.rename(cache, tmp / CACHE_DIR)
    return out / RESULT


__all__ = ["CACHE_DIR", "FORMAT", "JOURNAL_DIR", "KIND", "MARKER", "RESULT", "check_out", "open_out",
           "unfinished", "write_output"]
