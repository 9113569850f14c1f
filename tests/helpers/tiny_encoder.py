"""Test fixture: a tiny randomly initialised BERT encoder (no next-token head), optionally saved as a
sentence-transformers model directory (`modules.json`, `1_Pooling/config.json`) like the packaged default.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def build_tiny_bert(
    *, vocab_size: int = 50, d_model: int = 16, n_layer: int = 3, max_positions: int = 32, seed: int = 0
) -> torch.nn.Module:
    """A tiny `BertModel` (random weights from `seed`, no dropout) in eval mode."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=2,
        intermediate_size=4 * d_model, max_position_embeddings=max_positions, initializer_range=0.5,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return BertModel(config).eval()


def save_sentence_transformer(
    model: torch.nn.Module, directory: str | Path, *, pooling: str = "mean", normalize: bool = True
) -> Path:
    """Save `model` with a sentence-transformers layout: Transformer → Pooling(`pooling`) [→ Normalize]."""
    directory = Path(directory)
    model.save_pretrained(directory)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (directory / "modules.json").write_text(json.dumps(modules, indent=2))
    keys = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens", "mean_sqrt_len": "mean_sqrt_len_tokens"}
    config: dict[str, object] = {"word_embedding_dimension": model.config.hidden_size}
    config.update({f"pooling_mode_{key}": mode == pooling for mode, key in keys.items()})
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(config, indent=2))
    return directory
