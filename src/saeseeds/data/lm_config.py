"""Config of the language-model activation source: model, hookpoints, corpus, chunking."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LmConfig:
    """Which model, which modules, which text; used when `data.source` is 'lm' or 'cache'."""

    model: str = ""
    """HF model name or local path; empty means the embedded default model (see docs/default_model.md)."""
    revision: str = "main"
    hookpoints: list[str] = field(default_factory=list)
    """Module paths, e.g. 'gpt_neox.layers.6.mlp'; '*' matches one path segment ('transformer.h.*.mlp');
    empty means the default model's MLP hookpoint."""
    hook_input: bool = False
    """Take the module's input instead of its output."""
    dataset: str = ""
    """HF dataset name, a `save_to_disk` directory, or text/JSONL file(s) or a directory of them (comma
    separated); empty means the embedded default corpus."""
    dataset_config: str = ""
    """HF dataset configuration name (e.g. 'wikitext-2-raw-v1'), if the dataset has several."""
    dataset_split: str = "train"
    text_column: str = "text"
    max_documents: int = 0
    """Read at most this many documents (0: all), before packing."""
    ctx_len: int = 128
    """Tokens per packed chunk."""
    max_chunks: int = 0
    """Use at most this many training chunks (0: all)."""
    eval_chunks: int = 64
    """Chunks held out for evaluation (the last ones of the shuffled order)."""
    epochs: int = 1
    """Passes over the training chunks; passes after the first replay the activations kept in memory
    (for small corpora: tokens × d_in × 4 bytes per hookpoint must fit in RAM)."""
    lm_batch_size: int = 16
    """Chunks per model forward."""
    model_dtype: str = "auto"
    """'auto' (bf16 on CUDA, float32 on CPU), 'float32', 'bfloat16', 'float16'."""
    device: str = "auto"
    """Device of the language model: 'auto' (cuda if present, else cpu), 'cpu', 'cuda', ..."""
    exclude_special_tokens: bool = True
    """Drop activations at separator/BOS/CLS/padding positions (they are not text)."""
    trust_remote_code: bool = False
