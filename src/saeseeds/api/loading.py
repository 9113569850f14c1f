"""Load one SAE from any supported checkpoint layout (saeseeds/sparsify, SAELens, dictionary_learning)."""

from __future__ import annotations

from pathlib import Path

from saeseeds.sae import SparseAutoencoder, load_any


def load(path: str | Path, *, device: str = "cpu") -> SparseAutoencoder:
    """The SAE stored at `path`, whatever library wrote it (detected from the files present)."""
    return load_any(Path(path), device=device)
