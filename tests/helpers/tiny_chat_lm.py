"""Test fixture: a tiny randomly initialised causal LM with a chat template, saved as a local HF directory, so the
`hf:` and `openai:` interpret backends run end to end with no download (they prove plumbing, not quality).
"""

from __future__ import annotations

from pathlib import Path

from helpers.tiny_lm import build_tiny_causal_lm

CHAT_TEMPLATE = (
    "{% for m in messages %}<|endoftext|> {{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|> assistant :{% endif %}"
)
"""A minimal Jinja chat template (roles and contents in a row; the assistant turn opened on request)."""


def _vocabulary_documents() -> list[str]:
    """Text covering the backends' prompt words, the answers and a few example sentences."""
    from saeseeds.interpret.backends import prompts

    return [
        prompts.EXPLAINER_SYSTEM, prompts.DETECTION_SYSTEM, prompts.FUZZING_SYSTEM,
        "Example Explanation Text : Is the feature active in this text ? Are the bracketed tokens correctly marked ?",
        "yes no Yes No YES NO yes no",
        "the cat sat on the mat . a dog ran in the park . numbers one two three four five",
        "system user assistant << >> [ EXPLANATION ] : words about animals and numbers",
    ]


def build_tiny_chat_lm(directory: str | Path, *, seed: int = 0) -> Path:
    """Save a 2-layer GPT-2 (random weights from `seed`) with a word-level tokenizer and a chat template."""
    from transformers import AutoTokenizer

    directory = build_tiny_causal_lm(directory, _vocabulary_documents(), n_layer=2, d_model=32,
                                     max_positions=512, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return directory



def build_answering_chat_lm(directory: str | Path, *, seed: int = 0) -> Path:
    """`build_tiny_chat_lm` whose output head can only prefer 'yes' or 'no': the final LayerNorm pins feature 0
    at 10, every other token's logit is 0, and yes/no get 10 +- (h . v) for a random direction v; so each greedy
    answer is yes or no, both are the top two log-probabilities, and P(yes) = sigmoid(2 h . v) varies with the
    prompt, as a chat model's answer to a yes/no question would (still meaningless)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = build_tiny_chat_lm(directory, seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = 0.0
        model.transformer.ln_f.bias[0] = 10.0
        direction = 0.2 * torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(seed))
        direction[0] = 0.0
        head = torch.zeros_like(model.lm_head.weight)
        head[yes], head[no] = direction, -direction
        head[yes, 0] = head[no, 0] = 1.0
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(directory)
    return directory


_BUILT: dict[int, Path] = {}


def shared_answering_chat_lm(tmp_path_factory: object, *, seed: int = 0) -> Path:
    """One `build_answering_chat_lm` per test session and seed (test modules share it; never written to)."""
    if seed not in _BUILT:
        _BUILT[seed] = build_answering_chat_lm(tmp_path_factory.mktemp(f"answering-lm-{seed}"), seed=seed)
    return _BUILT[seed]
