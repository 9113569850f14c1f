"""Packaged configs (e.g. demo.toml), read with importlib.resources so they work from an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def default_config_text(name: str) -> str:
    """The text of a packaged config file, e.g. 'demo.toml'."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def write_default_config(name: str, directory: str | Path) -> Path:
    """Copy a packaged config into `directory` (so a run records the exact file it used); returns its path."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_config_text(name), encoding="utf-8")
    return path
