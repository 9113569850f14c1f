"""Hookpoints: module paths of a HF model, wildcard expansion, and capture of their activations.

`capture_activations` hooks every hookpoint, runs one forward, and stops the forward as soon as the last
hookpoint has fired (a private exception raised from that hook), so modules past the deepest hookpoint
never run.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from saeseeds.data.hookpoint_names import layer_modules, translate
from saeseeds.errors import DataError

log = logging.getLogger(__name__)


class _StopForward(Exception):
    """Raised from the last hook to end the forward pass early; never escapes `capture_activations`."""


def _matches(pattern: str, name: str) -> bool:
    """Segment-wise glob: '*' (or '[0-3]', '?') matches within one dotted segment, never across dots."""
    p_parts, n_parts = pattern.split("."), name.split(".")
    return len(p_parts) == len(n_parts) and all(fnmatchcase(n, p) for p, n in zip(p_parts, n_parts))


def _translated(pattern: str, names: Sequence[str]) -> list[str]:
    """A sparsify or TransformerLens spelling read as this model's one HF module (logged), else nothing."""
    hit = translate(pattern, names)
    if hit is None:
        return []
    log.info("hookpoint %r read as a %s name: module %r", pattern, hit[1], hit[0])
    return [hit[0]]


def resolve_hookpoints(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Expand `patterns` to module names of `model`, in the model's module order, without duplicates.

    A sparsify (base-model) or TransformerLens name that stands for exactly one module is read as that module.
    A name or pattern that matches nothing raises DataError listing the closest module names.
    """
    names = [name for name, _ in model.named_modules() if name]
    position = {name: i for i, name in enumerate(names)}
    found: set[str] = set()
    for pattern in patterns:
        pattern = pattern.strip()
        if any(ch in pattern for ch in "*?["):
            hits = [n for n in names if _matches(pattern, n)]
        else:
            hits = [pattern] if pattern in position else _translated(pattern, names)
        if not hits:
            close = layer_modules(pattern, names) or difflib.get_close_matches(pattern, names, n=6, cutoff=0.6)
            hint = f"; closest module names: {', '.join(close)}" if close else ""
            raise DataError(
                f"lm.hookpoints: {pattern!r} matches no module of {type(model).__name__}{hint}"
            )
        found.update(hits)
    if not found:
        raise DataError("lm.hookpoints: no hookpoint given")
    return sorted(found, key=position.__getitem__)


def _first_tensor(value: Any) -> torch.Tensor:
    """The activation in a module's output or input: the tensor itself, or the first one of a tuple."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    if hasattr(value, "last_hidden_state"):
        return value.last_hidden_state
    raise DataError(f"hookpoint output of type {type(value).__name__} holds no tensor to capture")


def _replace_first(value: Any, new: torch.Tensor) -> Any:
    """`value` with its activation tensor swapped for `new` (same container type)."""
    if isinstance(value, torch.Tensor):
        return new
    if isinstance(value, tuple):
        return (new, *value[1:])
    if isinstance(value, list):
        return [new, *value[1:]]
    raise DataError(f"cannot replace an activation inside a {type(value).__name__}")


@contextmanager
def hook_module(
    model: nn.Module,
    hookpoint: str,
    fn: Callable[[torch.Tensor], torch.Tensor | None],
    *,
    hook_input: bool = False,
) -> Iterator[None]:
    """Call `fn(activation)` at a module's output (or input); a tensor it returns replaces the activation."""
    module = model.get_submodule(hookpoint)

    if hook_input:

        def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> Any:
            if args:
                new = fn(_first_tensor(args))
                return None if new is None else ((new, *args[1:]), kwargs)
            key = next((k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
            if key is None:
                raise DataError(f"hookpoint {hookpoint!r}: its input holds no tensor")
            new = fn(kwargs[key])
            return None if new is None else (args, {**kwargs, key: new})

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:

        def hook(_mod: nn.Module, _args: tuple, output: Any) -> Any:
            new = fn(_first_tensor(output))
            return None if new is None else _replace_first(output, new)

        handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def capture_activations(
    model: nn.Module,
    hookpoints: Sequence[str],
    run_forward: Callable[[], Any],
    *,
    hook_input: bool = False,
    stop_early: bool = True,
) -> dict[str, torch.Tensor]:
    """Run `run_forward()` once and return each hookpoint's activation [batch, seq, d].

    With `stop_early`, the forward ends right after the last hookpoint fires: later modules never run.
    """
    captured: dict[str, torch.Tensor] = {}
    wanted = set(hookpoints)

    def make_recorder(name: str) -> Callable[[torch.Tensor], None]:
        def record(activation: torch.Tensor) -> None:
            captured[name] = activation.detach()
            if stop_early and wanted.issubset(captured):
                raise _StopForward

        return record

    with _hooks(model, hookpoints, make_recorder, hook_input):
        try:
            run_forward()
        except _StopForward:
            pass
    missing = [h for h in hookpoints if h not in captured]
    if missing:
        raise DataError(f"hookpoint(s) {', '.join(missing)} did not run during the forward pass")
    return captured


@contextmanager
def _hooks(
    model: nn.Module,
    hookpoints: Sequence[str],
    make_fn: Callable[[str], Callable[[torch.Tensor], None]],
    hook_input: bool,
) -> Iterator[None]:
    """Enter `hook_module` for each hookpoint, removing every hook on exit."""
    with ExitStack() as stack:
        for name in hookpoints:
            stack.enter_context(hook_module(model, name, make_fn(name), hook_input=hook_input))
        yield
