"""A disk cache of LLM responses keyed by what was asked, so rerunning `interpret` costs no requests.

One JSON file per response, `<dir>/<first 2 hex>/<sha256>.json`, where the hash covers the model, the messages
and the request parameters (canonical JSON). Files are written atomically and follow the umask; a file that
cannot be read back (a partial copy, an edit) counts as a miss and is rewritten.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saeseeds.atomic import atomic_write_json
from saeseeds.hashing import sha256_hex


def request_key(model: str, messages: Any, params: Mapping[str, Any]) -> str:
    """The sha256 hex of (model, messages, params) as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps({"model": model, "messages": messages, "params": dict(params)}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return sha256_hex(blob.encode("utf-8"))


class ResponseCache:
    """Responses on disk under `directory` (created on the first write); thread-safe; counts hits and misses."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        """Where the response for `key` lives."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for `key`, or None (absent or unreadable)."""
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            value = None
        with self._lock:
            if isinstance(value, dict):
                self.hits += 1
                return value
            self.misses += 1
        return None

    def put(self, key: str, response: Mapping[str, Any]) -> None:
        """Store `response` for `key` atomically."""
        atomic_write_json(self._path(key), dict(response), indent=None)
