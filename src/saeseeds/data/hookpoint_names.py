"""Hookpoint spellings of other tools, mapped to this model's HF module names where the mapping is unambiguous.

saeseeds hooks HF modules by their full name in the loaded model (`transformer.h.1.mlp` for GPT-2's LM-head
model). Users arrive with two other spellings: sparsify's, which names modules of the *base* model (`h.1.mlp`,
`layers.3`), and TransformerLens's (`blocks.1.hook_mlp_out`). `translate` returns the one HF module a foreign name
stands for, or None when it stands for none or for several (the caller then suggests close names instead).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# TransformerLens hook → the child of decoder layer N whose *output* is that activation ("" = the layer itself).
# Only hooks that equal one module's output in HF models are mapped: hook_resid_pre, hook_mlp_in and the
# MLP's inner hooks (mlp.hook_pre/post) are inputs or intermediates, not a module output, and are left unmapped.
_TL_HOOKS: dict[str, tuple[str, ...]] = {
    "hook_mlp_out": ("mlp", "feed_forward", "ffn"),
    "hook_attn_out": ("attn", "self_attn", "attention.self_attn"),
    "hook_resid_post": ("",),
}
_TL_NAME = re.compile(r"^blocks\.(\d+)\.(hook_\w+)$")


def _layer_lists(names: Sequence[str]) -> list[str]:
    """Module names that hold the decoder layers: the parents of children named 0, 1, ... that have children."""
    parents = {n.rsplit(".", 1)[0] for n in names if "." in n and n.rsplit(".", 1)[1] == "0"}
    return sorted(p for p in parents if any(n.startswith(f"{p}.0.") for n in names))


def _suffix_match(name: str, names: Sequence[str]) -> str | None:
    """The one module whose name ends with `.name` (a base-model name inside a wrapper such as an LM head)."""
    hits = [n for n in names if n.endswith("." + name)]
    return hits[0] if len(hits) == 1 else None


def _transformer_lens(name: str, names: Sequence[str]) -> str | None:
    """`blocks.N.hook_X` → the module of decoder layer N whose output is hook_X, where exactly one such exists."""
    m = _TL_NAME.match(name)
    if m is None or m.group(2) not in _TL_HOOKS:
        return None
    layer, present = m.group(1), set(names)
    found = {
        f"{parent}.{layer}" + (f".{child}" if child else "")
        for parent in _layer_lists(names)
        for child in _TL_HOOKS[m.group(2)]
        if f"{parent}.{layer}" + (f".{child}" if child else "") in present
    }
    return found.pop() if len(found) == 1 else None


def translate(name: str, names: Sequence[str]) -> tuple[str, str] | None:
    """(HF module name, which spelling it was read as) for a sparsify or TransformerLens hookpoint, else None."""
    tl = _transformer_lens(name, names)
    if tl is not None:
        return tl, "TransformerLens"
    base = _suffix_match(name, names)
    if base is not None:
        return base, "base-model (sparsify)"
    return None


def layer_modules(name: str, names: Sequence[str]) -> list[str]:
    """For an unmapped `blocks.N.hook_X`, the modules of decoder layer N to choose from (else nothing)."""
    m = _TL_NAME.match(name)
    if m is None:
        return []
    prefixes = [f"{parent}.{m.group(1)}" for parent in _layer_lists(names)]
    return [n for n in names for p in prefixes if n == p or (n.startswith(p + ".") and n.count(".") <= p.count(".") + 1)]
