"""Test fixture: a tiny randomly initialised causal LM plus a word-level tokenizer, saved as a local HF model
directory, so the LM code paths (hooks, early exit, LM loss, caching) are tested without any hub access.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

TINY_ARCHITECTURES = ("gpt2", "gpt_neox")


def build_tiny_tokenizer(documents: Sequence[str], vocab_size: int = 500) -> PreTrainedTokenizerFast:
    """A whitespace word-level fast tokenizer trained on `documents`, with `<|endoftext|>` as BOS/EOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    eos, unk, pad = "<|endoftext|>", "<unk>", "<pad>"
    core = Tokenizer(models.WordLevel(unk_token=unk))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[unk, eos, pad])
    core.train_from_iterator(list(documents), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=unk, eos_token=eos, bos_token=eos, pad_token=pad
    )


def build_tiny_causal_lm(
    directory: str | Path,
    documents: Sequence[str],
    *,
    architecture: str = "gpt2",
    n_layer: int = 3,
    d_model: int = 32,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """Save a tiny `architecture` causal LM (random weights from `seed`) and its tokenizer to `directory`."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    if architecture not in TINY_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {TINY_ARCHITECTURES}, got {architecture!r}")
    tokenizer = build_tiny_tokenizer(documents)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_positions=max_positions, n_embd=d_model, n_layer=n_layer, n_head=2,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = GPTNeoXConfig(
            vocab_size=vocab, hidden_size=d_model, num_hidden_layers=n_layer, num_attention_heads=2,
            intermediate_size=4 * d_model, max_position_embeddings=max_positions,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = GPTNeoXForCausalLM(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
