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


def train_tiny_causal_lm(directory: str | Path, documents: Sequence[str], *, steps: int = 150, ctx_len: int = 24,
                         lr: float = 1e-2, seed: int = 0) -> Path:
    """Fit the tiny LM saved in `directory` to `documents` for `steps` Adam steps and save it back, so that its
    modules matter (zero-ablating one raises the loss), as in a real model; a few seconds on one core."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    ids = torch.tensor([t for doc in documents for t in tokenizer(doc)["input_ids"]], dtype=torch.int64)
    chunks = ids[: len(ids) // ctx_len * ctx_len].reshape(-1, ctx_len)
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = chunks[torch.randint(0, chunks.shape[0], (16,), generator=g)]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(directory)
    return directory
