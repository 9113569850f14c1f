"""configs/demo.toml, configs/synthetic.toml and configs/recipes.toml are the packaged defaults, copied for
browsing: keep them equal."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.toml", "synthetic.toml", "recipes.toml"])
def test_repo_copy_matches_the_packaged_config(name: str) -> None:
    """An edit to one copy without the other fails here (the CLI reads src/saeseeds/defaults/, not configs/)."""
    copy = (CONFIGS / name).read_bytes()
    packaged = resources.files("saeseeds.defaults").joinpath(name).read_bytes()
    assert copy == packaged, f"configs/{name} differs from src/saeseeds/defaults/{name}; copy one onto the other"
