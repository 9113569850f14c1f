"""Nothing already scored is lost: each latent's explanation and scores are appended to a journal inside `--out`
as soon as they exist, so a failure (an endpoint that dies, a kill) leaves them there and a rerun of the same
command continues from them (docs/formats.md, "Interpretation").

The journal is `<out>/.journal/<fingerprint>.jsonl`: one JSON object per line, flushed and fsynced per latent. The
fingerprint hashes everything that decides a latent's result (the explainer, the sampling, the rule, the
cross-seed results' weight digests, the analysis rows), so a rerun with other settings starts a new journal and
never mixes results. A torn last line (a kill mid-write) is ignored. The finished output is built beside `--out`
and swapped in whole, which removes the journal with the unfinished directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeseeds.atomic import file_mode, json_safe
from saeseeds.hashing import sha256_hex

JOURNAL_DIR = ".journal"


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that decide every latent's result."""
    return sha256_hex(json.dumps(json_safe(settings), sort_keys=True).encode())[:16]


class Journal:
    """Append-only per-latent results of one interpret job, keyed '<set>/<seed>/<latent>'."""

    def __init__(self, out: Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(out) / JOURNAL_DIR / f"{fingerprint(settings)}.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Every complete record already journaled (a torn or foreign line is skipped)."""
        done: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return done
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                done[record["key"]] = record
        return done

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one latent's record durably (flushed and fsynced before returning)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(json_safe(dict(record)), allow_nan=False) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, file_mode())
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line of a killed run: end it first
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
