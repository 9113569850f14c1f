"""Packaged configs (e.g. demo.toml), read with importlib.resources so they work from an installed wheel."""

from __future__ import annotations

from importlib import resources


def default_config_text(name: str) -> str:
    """The text of a packaged config file, e.g. 'demo.toml'."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
