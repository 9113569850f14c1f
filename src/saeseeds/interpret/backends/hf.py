"""`hf:PATH`: a local Hugging Face causal LM writes explanations and scores them by its yes/no probabilities.

Nothing is downloaded (local_files_only). Chats go through the tokenizer's chat template when it has one, else a
plain 'System: / User: / Assistant:' transcript. Explanations are greedy generations of at most max_new_tokens;
a yes/no answer is read from the next-token distribution after the prompt: the probability mass of every
single-token spelling of 'yes' against that of 'no', normalised to one probability. Prompts are batched, padded
on the left, with position ids that skip the padding so a batched answer equals the unbatched one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jinja2.exceptions import TemplateError

from saeseeds.interpret.backends.lm import Failure
from saeseeds.interpret.backends.prompts import NO, YES, Messages
from saeseeds.interpret.interface import BackendError

ANSWER_SPELLINGS = ("{w}", " {w}", "{W}", " {W}", "{U}", " {U}")
"""Spellings of an answer word whose single tokens all count towards it ({w} yes, {W} Yes, {U} YES)."""


def _fail(path: Path, why: str) -> BackendError:
    """The one-line error for an unusable --explainer hf:PATH."""
    return BackendError(f"--explainer hf:{path}: {why}")


def check_causal_lm(path: Path) -> Any:
    """The model config at `path`, or BackendError when it is no local causal-LM directory (e.g. an encoder)."""
    from transformers import AutoConfig

    from saeseeds.data.run_model import is_causal_config

    if not path.is_dir():
        raise _fail(path, "no such directory (a local Hugging Face model directory is needed; nothing is downloaded)")
    if not (path / "config.json").is_file():
        raise _fail(path, "no config.json: not a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise _fail(path, f"cannot read its config.json ({' '.join(str(err).split())[:200]})") from err
    if not is_causal_config(config):
        archs = ", ".join(getattr(config, "architectures", None) or ["none listed"])
        raise _fail(path, f"not a causal language model (architectures: {archs}); an instruct/chat model that "
                          "generates text is needed, e.g. one saved with AutoModelForCausalLM.save_pretrained")
    return config


def answer_token_ids(tokenizer: Any, word: str) -> list[int]:
    """Token ids that spell `word` alone (any case, with or without a leading space); [] when none does."""
    ids = set()
    for form in ANSWER_SPELLINGS:
        text = form.format(w=word, W=word.capitalize(), U=word.upper())
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
            if tokenizer.decode(encoded).strip().lower() == word:
                ids.add(encoded[0])
    return sorted(ids)


def without_system(chat: Messages) -> Messages:
    """The chat with its system message put at the start of the first user message (templates that refuse a
    system role, e.g. Gemma's)."""
    system, rest = chat[0]["content"], list(chat[1:])
    if rest and rest[0]["role"] == "user":
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


class HFEngine:
    """A local causal LM answering chats in batches (see the module docstring)."""

    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 8) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from saeseeds.device import resolve_device, resolve_dtype
        from saeseeds.progress import quiet_libraries

        quiet_libraries()
        self.path = Path(path).expanduser().resolve()
        self.name = f"hf:{self.path}"
        check_causal_lm(self.path)
        self.device = resolve_device(device, field="--device")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, local_files_only=True, dtype=resolve_dtype("auto", self.device)
            )
        except (OSError, ValueError) as err:
            raise _fail(self.path, f"cannot load it ({' '.join(str(err).split())[:200]})") from err
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.pad_token_id is None:
            raise _fail(self.path, "its tokenizer has neither a pad nor an end-of-text token to pad batches with")
        self.yes_ids = answer_token_ids(self.tokenizer, YES)
        self.no_ids = answer_token_ids(self.tokenizer, NO)
        if not self.yes_ids or not self.no_ids:
            raise _fail(self.path, "its tokenizer has no single token for 'yes' or 'no', so answers cannot be scored")
        self.batch_size = max(1, int(batch_size))

    @property
    def _templated(self) -> bool:
        """True when the tokenizer has a chat template (its text already holds the special tokens it wants)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, chat: Messages) -> str:
        """The chat as the model's own text: its chat template with the assistant turn opened, else a transcript."""
        if self._templated:
            try:
                return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            except TemplateError:  # e.g. "System role not supported"
                if not chat or chat[0]["role"] != "system":
                    raise
                return self.prompt_text(without_system(chat))
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in chat]
        return "\n\n".join(turns) + "\n\nAssistant:"

    def _encode(self, chats: Sequence[Messages]) -> dict[str, torch.Tensor]:
        """Left-padded input ids, attention mask and padding-aware position ids, on the model's device."""
        texts = [self.prompt_text(c) for c in chats]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self._templated)
        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": mask.to(self.device),
                "position_ids": positions.to(self.device)}

    def _fitting(self, chats: Sequence[Messages], room: int) -> tuple[list[int], dict[int, Failure]]:
        """Indices of the chats whose prompt plus `room` new tokens fit the model's positions, and Failures else."""
        from saeseeds.data.lm_source import max_positions

        limit = max_positions(self.model.config)
        ok: list[int] = []
        too_long: dict[int, Failure] = {}
        for i, chat in enumerate(chats):
            n = len(self.tokenizer(self.prompt_text(chat), add_special_tokens=not self._templated)["input_ids"])
            if limit is not None and n + room > limit:
                too_long[i] = Failure(f"the prompt ({n} tokens, + {room} to generate) exceeds the model's {limit} "
                                      "positions; show fewer or shorter contexts")
            else:
                ok.append(i)
        return ok, too_long

    def _in_batches(self, chats: Sequence[Messages], room: int, run: Any) -> list[Any]:
        """`run(batch)` over the chats that fit, batch_size at a time, merged in order with the Failures."""
        ok, out = self._fitting(chats, room)
        results: dict[int, Any] = dict(out)
        for start in range(0, len(ok), self.batch_size):
            idx = ok[start : start + self.batch_size]
            results.update(zip(idx, run([chats[i] for i in idx]), strict=True))
        return [results[i] for i in range(len(chats))]

    @torch.inference_mode()
    def complete(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str | Failure]:
        """Greedy replies of at most `max_new_tokens` tokens (special tokens dropped)."""

        def run(batch: Sequence[Messages]) -> list[str]:
            enc = self._encode(batch)
            enc.pop("position_ids")  # generate derives them from the attention mask
            generated = self.model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            return self.tokenizer.batch_decode(generated[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

        return self._in_batches(chats, max_new_tokens, run)

    @torch.inference_mode()
    def yes_probability(self, chats: Sequence[Messages]) -> list[float | Failure]:
        """P(yes) / (P(yes) + P(no)) from the next-token distribution after each prompt."""

        def run(batch: Sequence[Messages]) -> list[float | Failure]:
            probs = torch.softmax(self.model(**self._encode(batch)).logits[:, -1, :].float(), dim=-1)
            p_yes, p_no = probs[:, self.yes_ids].sum(-1), probs[:, self.no_ids].sum(-1)
            return [y / (y + n) if y + n > 0 else Failure("the model gives 'yes' and 'no' zero probability")
                    for y, n in zip(p_yes.tolist(), p_no.tolist())]

        return self._in_batches(chats, 1, run)
