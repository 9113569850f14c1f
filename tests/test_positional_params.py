"""No function in src/ takes more than MAX_POSITIONAL positional parameters: a long positional list is read back
by position at every call site (pool.json's record builder once took 19); beyond a few, keywords or a dataclass."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "saeseeds"
MAX_POSITIONAL = 8


def _compiled(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A numba kernel (`@njit`, `@jit`, with or without options): numba has no keyword-only parameters."""
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("njit", "jit"):
            return True
    return False


def positional_counts(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(name, line, positional parameters) of every function in `tree` but numba kernels; `self` and `cls` of
    methods not counted."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _compiled(node):
            names = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
            if names and names[0] in ("self", "cls"):
                names = names[1:]
            out.append((node.name, node.lineno, len(names)))
    return out


def test_the_scan_counts_positional_parameters_only() -> None:
    tree = ast.parse("def f(a, b, /, c, *args, d, e=1, **kw): pass\nclass K:\n    def m(self, x): pass\n"
                     "@njit(cache=True)\ndef kernel(a, b, c, d, e, f, g, h, i): pass\n")
    assert positional_counts(tree) == [("f", 1, 3), ("m", 3, 1)]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_function_takes_too_many_positional_parameters(path: Path) -> None:
    long = [f"{name} (line {line}): {n}" for name, line, n in positional_counts(ast.parse(path.read_text()))
            if n > MAX_POSITIONAL]
    assert not long, f"{path.relative_to(SRC)}: more than {MAX_POSITIONAL} positional parameters: {long}"
