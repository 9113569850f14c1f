"""save_figure: atomic image, one dpi, strict-JSON sidecar, figure always closed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from conftest import PNG_MAGIC, read_strict_json
from saeseeds.report.figures import FIGURE_DPI, save_figure, sidecar_path
from saeseeds.version import __version__


def _figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    return fig


def test_png_and_strict_sidecar(tmp_path: Path) -> None:
    """PNG at the path, numbers beside it as strict JSON (NaN → null), the figure closed, no temp left."""
    fig = _figure()
    path = tmp_path / "sub" / "fig.png"
    numbers = {"x": np.array([1.0, np.nan]), "t": torch.tensor([np.inf]), "n": 3}
    assert save_figure(fig, path, numbers) == path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert sidecar_path(path) == tmp_path / "sub" / "fig.json"
    assert read_strict_json(sidecar_path(path)) == {"schema": "saeseeds.figure/1", "saeseeds_version": __version__,
                                                  "x": [1.0, None], "t": [None], "n": 3}
    save_figure(_figure(), path, [1, 2])  # numbers that are not a mapping: under `numbers`
    assert read_strict_json(sidecar_path(path))["numbers"] == [1, 2]
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fig.json", "fig.png"]


def test_no_sidecar_without_numbers_and_mode_follows_umask(tmp_path: Path) -> None:
    """Without numbers only the image is written; it is readable by others under umask 022 (not mkstemp's 0600)."""
    old = os.umask(0o022)
    try:
        save_figure(_figure(), tmp_path / "fig.png")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
    assert stat.S_IMODE((tmp_path / "fig.png").stat().st_mode) == 0o644


def test_format_follows_the_suffix(tmp_path: Path) -> None:
    """A .pdf / .svg path gets that format, although the temporary name has another suffix."""
    save_figure(_figure(), tmp_path / "fig.pdf")
    save_figure(_figure(), tmp_path / "fig.svg")
    assert (tmp_path / "fig.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (tmp_path / "fig.svg").read_bytes()[:1000]


def test_one_dpi_for_every_png(tmp_path: Path) -> None:
    """The PNG carries FIGURE_DPI in its pHYs chunk (pixels per metre)."""
    save_figure(_figure(), tmp_path / "fig.png")
    data = (tmp_path / "fig.png").read_bytes()
    at = data.index(b"pHYs") + 4
    per_metre = int.from_bytes(data[at : at + 4], "big")
    assert round(per_metre * 0.0254) == FIGURE_DPI


def test_bad_numbers_write_nothing_and_close_the_figure(tmp_path: Path) -> None:
    """Numbers that are not JSON fail before the image is written; the figure is closed anyway."""
    fig = _figure()
    with pytest.raises(TypeError, match="object"):
        save_figure(fig, tmp_path / "fig.png", {"bad": object()})
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(fig.number)
