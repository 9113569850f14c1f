"""Shared checks for report tests: a figure file is a real image, and its sidecar is strict JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from saeseeds.version import __version__

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _reject(constant: str) -> None:
    """parse_constant hook: strict JSON has no NaN / Infinity."""
    raise ValueError(f"non-strict JSON constant {constant}")


def read_strict_json(path: Path) -> Any:
    """Parse `path`, failing on NaN/Infinity (which Python's json would otherwise accept)."""
    return json.loads(path.read_text(), parse_constant=_reject)


@pytest.fixture
def check_figure():
    """Assert that `path` is a PNG with a strict-JSON sidecar (stamped with its schema and the saeseeds version) and
    no temporaries beside it; return the numbers (the sidecar without the stamp)."""

    def check(path: Path) -> Any:
        assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC, path
        others = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
        assert others == [], others
        numbers = read_strict_json(path.with_suffix(".json"))
        assert numbers.pop("schema") == "saeseeds.figure/1" and numbers.pop("saeseeds_version") == __version__
        return numbers

    return check
