"""Load one SAE from any supported checkpoint layout (saeseeds/sparsify, SAELens, dictionary_learning), local or
named on the hub (`OWNER/REPO/FOLDER`, SAELens `RELEASE/SAE_ID`; see docs/ecosystem.md)."""

from __future__ import annotations

from pathlib import Path

from saeseeds.sae import SparseAutoencoder, load_any


def load(path: str | Path, *, device: str = "cpu") -> SparseAutoencoder:
    """The SAE stored at `path` (a folder or a hub name), whatever library wrote it (detected from the files)."""
    return load_any(path, device=device)
