"""The chat prompts every LLM backend sends, and the parsing of what comes back.

Modelled on EleutherAI delphi's prompts (its default explainer, detection and fuzzing scorers), written anew:
the explainer sees activating contexts with the firing tokens marked <<like this>> and answers with a last line
`[EXPLANATION]: ...`; the scorers ask one context at a time for a yes/no answer, and the probability is read from
the answer token (P(yes) / (P(yes) + P(no)), the normalisation delphi applies to its 1/0 answers). Unlike delphi,
which can show several examples per scoring prompt and asks for a list, each prompt here holds one context, so
each probability comes from one answer token and is cached on its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from saeseeds.interpret.interface import Context, LatentRecord

Messages = list[dict[str, str]]
"""An OpenAI-style chat: [{'role': 'system'|'user'|'assistant', 'content': str}, ...]."""

MARK_FRACTION = 0.3
"""A token is marked in an explainer prompt when its activation exceeds this fraction of the context's maximum
(delphi's explainer threshold)."""
MAX_EXPLANATION_CHARS = 400
"""An explanation longer than this is cut (a model that rambles past its last line)."""
YES, NO = "yes", "no"

EXPLAINER_SYSTEM = """You study a feature of a language model that responds to certain text. You are shown \
short text examples; in each, the tokens on which the feature is active are enclosed in double angle brackets, \
<<like this>> (a run of consecutive active tokens shares one pair of brackets).
Describe in one short phrase what the feature responds to: the words themselves, their role, or the context \
around them. Be specific and brief; do not list several alternative explanations and do not mention the brackets.
The last line of your reply must be the explanation in the form
[EXPLANATION]: <your explanation>"""

DETECTION_SYSTEM = """You check explanations of a language-model feature. You are given an explanation of what \
the feature responds to and one text example. Decide whether the feature is active anywhere in the example, \
judging only by the explanation. Answer with a single word: yes or no."""

FUZZING_SYSTEM = """You check explanations of a language-model feature. You are given an explanation of what \
the feature responds to and one text example in which some tokens are enclosed in double angle brackets \
<<like this>>. Decide whether the bracketed tokens are exactly the kind of tokens the explanation describes, \
i.e. whether the marking is correct. Answer with a single word: yes or no."""

_EXPLANATION_LINE = re.compile(r"\[\s*explanation\s*\]\s*:?(.*)", re.IGNORECASE)
_ANSWER_WORD = re.compile(r"[A-Za-z]+")


# --------------------------------------------------------------------------------------------
# rendering contexts


def _piece(token: str) -> tuple[str, bool]:
    """A token's text and whether it continues the previous word (WordPiece '##'); 'Ġ'/'▁' become a space."""
    if token.startswith("##") and len(token) > 2:
        return token[2:], True
    if token[:1] in ("Ġ", "▁"):
        return " " + token[1:], False
    return token, False


def render(tokens: Sequence[str], marked: Sequence[int] = ()) -> str:
    """Context text with the tokens at `marked` enclosed in <<...>> (consecutive ones share one pair).

    Byte-level/SentencePiece tokens (leading space, 'Ġ' or '▁') are concatenated; WordPiece tokens are joined by
    spaces with '##' pieces glued to the previous one.
    """
    pieces = [_piece(t) for t in tokens]
    spaced = any(text[:1].isspace() for text, _ in pieces)
    on = set(marked)
    out: list[str] = []
    for i, (text, glued) in enumerate(pieces):
        sep = "" if (i == 0 or spaced or glued) else " "
        opens = i in on and (i - 1) not in on
        closes = i in on and (i + 1) not in on
        if opens:
            lead = len(text) - len(text.lstrip())
            text = text[:lead] + "<<" + text[lead:]
        out.append(sep + text + (">>" if closes else ""))
    return "".join(out).strip()


def firing_positions(context: Context, fraction: float = MARK_FRACTION) -> list[int]:
    """Positions whose activation exceeds `fraction` of the context's maximum (none when it never fires)."""
    top = context.max_activation
    if top <= 0:
        return []
    return [i for i, a in enumerate(context.activations) if a > fraction * top]


# --------------------------------------------------------------------------------------------
# prompts


def explainer_messages(record: LatentRecord) -> Messages:
    """The explainer chat for one latent: its activating contexts, firing tokens marked."""
    lines = [
        f"Example {i}: {render(c.tokens, firing_positions(c))}" for i, c in enumerate(record.activating, 1)
    ]
    return [
        {"role": "system", "content": EXPLAINER_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def detection_messages(explanation: str, context: Context) -> Messages:
    """The detection chat: does the explained latent fire anywhere in this (unmarked) context?"""
    user = f"Explanation: {explanation}\n\nText: {render(context.tokens)}\n\nIs the feature active in this text?"
    return [{"role": "system", "content": DETECTION_SYSTEM}, {"role": "user", "content": user}]


def fuzzing_messages(explanation: str, context: Context, marked: Sequence[int]) -> Messages:
    """The fuzzing chat: are the tokens at `marked` the ones the explanation describes?"""
    user = (
        f"Explanation: {explanation}\n\nText: {render(context.tokens, marked)}\n\n"
        "Are the bracketed tokens correctly marked?"
    )
    return [{"role": "system", "content": FUZZING_SYSTEM}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------------------------
# parsing


def parse_explanation(text: str) -> str:
    """The explanation in a reply: after the last '[EXPLANATION]:', else its last non-empty line.

    Raises ValueError saying what is wrong when nothing usable is left (an empty reply, an empty explanation).
    """
    if not text or not text.strip():
        raise ValueError("the explainer returned an empty reply")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    found = [m.group(1).strip() for ln in lines if (m := _EXPLANATION_LINE.search(ln))]
    candidate = found[-1] if found else lines[-1]
    candidate = candidate.replace("<<", "").replace(">>", "").strip().strip('"').strip()
    if not candidate:
        raise ValueError("the explainer's [EXPLANATION]: line is empty")
    return candidate[:MAX_EXPLANATION_CHARS]


def parse_yes_no(text: str) -> float:
    """1.0 for a reply whose first word is yes, 0.0 for no (the fallback when a server gives no log-probs).

    Raises ValueError naming what came back otherwise.
    """
    match = _ANSWER_WORD.search(text or "")
    word = match.group(0).lower() if match else ""
    if word == YES:
        return 1.0
    if word == NO:
        return 0.0
    raise ValueError("the answer is neither yes nor no")


def answer_word(token: str) -> str | None:
    """'yes' or 'no' when a single answer token spells one (any case, surrounding space/punctuation), else None."""
    word = token.strip().strip(".,:;!\"'").lower()
    return word if word in (YES, NO) else None


def snippet(text: str, limit: int = 80) -> str:
    """The start of a reply for an error line: one line, at most `limit` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
