"""Config of the language-model activation source: model, hookpoints, corpus, chunking."""

from __future__ import annotations

from dataclasses import dataclass, field

from saeseeds.config.checks import (
    check_bool,
    check_choice,
    check_device,
    check_hookpoint,
    check_int,
    check_text,
    fail,
)

MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class LmConfig:
    """Which model, which modules, which text; used when `data.source` is 'lm' or 'cache'."""

    model: str = ""
    """HF model name or local path; empty means the embedded default model (see docs/default_model.md)."""
    revision: str = "main"
    """Hub revision (branch, tag or commit) of lm.model."""
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
    """Split of the HF dataset to read."""
    text_column: str = "text"
    """Column (or JSONL key) holding the text."""
    max_documents: int = 0
    """Read at most this many documents (0: all), before packing."""
    ctx_len: int = 128
    """Tokens per packed chunk; at most the model's positions (max_position_embeddings)."""
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
    """Let transformers run the model repository's own code (needed by some hub models)."""
    distributed_forward: str = "sharded"
    """Under torchrun: 'sharded' (each rank runs the model on its slice of a batch's chunks, then the
    activations are all-gathered) or 'replicated' (every rank runs the whole forward; no gather traffic)."""

    def validate(self, where: str = "lm") -> None:
        """Range checks of every field; a bad one raises ConfigError naming `lm.<field>`."""
        for name in ("model", "dataset", "dataset_config"):
            if not isinstance(getattr(self, name), str):
                raise fail(f"{where}.{name}", getattr(self, name), "a string (empty: the default)", "is not a string")
        for name in ("revision", "dataset_split", "text_column"):
            check_text(f"{where}.{name}", getattr(self, name))
        if not isinstance(self.hookpoints, (list, tuple)):
            raise fail(f"{where}.hookpoints", self.hookpoints, "a list of module paths", "is not a list")
        for i, hookpoint in enumerate(self.hookpoints):
            check_hookpoint(f"{where}.hookpoints[{i}]", hookpoint, "a module path such as 'gpt_neox.layers.6.mlp'")
        if len(set(self.hookpoints)) != len(self.hookpoints):
            raise fail(f"{where}.hookpoints", self.hookpoints, "distinct module paths", "repeats a hookpoint")
        check_bool(f"{where}.hook_input", self.hook_input)
        check_int(f"{where}.max_documents", self.max_documents, 0, note="0 reads every document")
        check_int(f"{where}.ctx_len", self.ctx_len, 2, note="a chunk holds a BOS/CLS prefix and at least one token")
        check_int(f"{where}.max_chunks", self.max_chunks, 0, note="0 uses every chunk")
        check_int(f"{where}.eval_chunks", self.eval_chunks, 0)
        check_int(f"{where}.epochs", self.epochs, 1)
        check_int(f"{where}.lm_batch_size", self.lm_batch_size, 1)
        check_choice(f"{where}.distributed_forward", self.distributed_forward, ("sharded", "replicated"))
        check_choice(f"{where}.model_dtype", self.model_dtype, MODEL_DTYPES)
        check_device(f"{where}.device", self.device)
        check_bool(f"{where}.exclude_special_tokens", self.exclude_special_tokens)
        check_bool(f"{where}.trust_remote_code", self.trust_remote_code)
