"""Figures inside the page: PNG files (and figures drawn for the report) as base64 data URIs, with readable
titles that name the configuration each one shows.
"""

from __future__ import annotations

import base64
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure as MplFigure

from saeseeds.report.figures import save_figure
from saeseeds.report.html.blocks import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDE_ASPECT = 1.8
"""Figures wider than this (width / height) take a whole row of the grid."""
MAX_FIGURE_BYTES = 4_000_000
"""A PNG larger than this is not embedded (the section names the file instead)."""

KNOWN_TITLES = {
    "fig_a_dec_vs_enc": "Decoder vs encoder matching cosine of every latent pair",
    "fig_b_only_in_base": "Latents found only in the base seed, against the number of other seeds",
    "fig_c_similarity_vs_frequency": "Matched decoder cosine against firing frequency",
    "fig_c_stability_vs_frequency": "Stability against firing frequency",
    "fig_d_stability_hist": "Distribution of per-latent stability",
    "stability_vs_frequency": "Stability against firing frequency",
    "stability_vs_top_token_share": "Stability against top-token share of activation mass",
    "stability_vs_entropy": "Stability against trigger-token entropy",
    "ablation_fvu": "FVU with stable, unstable and matched random sets ablated",
    "ablation_output_recovered": "Output recovered with stable, unstable and matched random sets ablated",
    "ablation_lm_loss": "LM loss with stable, unstable and matched random sets ablated",
    "principal_angles": "Principal angles between the unstable latents' spans across seeds",
    "group_ranks": "Ranks of close groups of unstable latents",
}


def _aspect(png: bytes) -> float:
    """Width / height from the PNG header (IHDR), 1 when it cannot be read."""
    width, height = struct.unpack(">II", png[16:24]) if len(png) >= 24 else (1, 1)
    return width / height if height else 1.0


def data_uri(png: bytes) -> str:
    """`data:image/png;base64,...` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def humanize(stem: str) -> str:
    """A title for a figure file's stem: the known description, or its words."""
    if stem in KNOWN_TITLES:
        return KNOWN_TITLES[stem]
    text = stem.replace("__", " — ").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def png_figure(path: Path, title: str, caption: str = "", source: str = "") -> Figure | None:
    """The figure at `path` embedded, or None when it is not a readable PNG within MAX_FIGURE_BYTES."""
    try:
        if path.stat().st_size > MAX_FIGURE_BYTES:
            return None
        png = path.read_bytes()
    except OSError:
        return None
    if not png.startswith(PNG_MAGIC):
        return None
    return Figure(title, data_uri(png), caption, source, wide=_aspect(png) > WIDE_ASPECT)


def drawn_figure(draw: Callable[[], MplFigure], title: str, caption: str = "") -> Figure:
    """A matplotlib figure drawn for the report, written through `save_figure` and embedded."""
    with tempfile.TemporaryDirectory(prefix="saeseeds-report-") as tmp:
        path = save_figure(draw(), Path(tmp) / "figure.png")
        return Figure(title, data_uri(path.read_bytes()), caption)
