"""Every config field with its type, default and docstring, read from the dataclasses, for `--help` and the docs.

The docstring of a field is the string literal right below it in the class body (the convention of
simple_parsing and of this package); it is read from the source with `ast`, so a field added to any section
shows up in `saeseeds train --help` with nothing else to write.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

from saeseeds.config.coerce import _hints
from saeseeds.config.schema import RunConfig


class FieldHelp(NamedTuple):
    """One config field as `--help` lists it."""

    flag: str
    """The override flag, e.g. '--train.lr' or '--sae.k' (every [[sae]]; '--saes.N.k' for one)."""
    type: str
    default: str
    doc: str


class SectionHelp(NamedTuple):
    """One config section (a dataclass) and its fields."""

    name: str
    doc: str
    fields: list[FieldHelp]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name → its docstring (the string literal after the field in the class body); '' when absent."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (frozen app): fields stay undocumented
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, following in zip(body, [*body[1:], None]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                doc = ""
                if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                        and isinstance(following.value.value, str)):
                    doc = inspect.cleandoc(following.value.value)
                docs[node.target.id] = doc
    return docs


def type_name(tp: Any) -> str:
    """A readable annotation: 'int', 'float', 'bool', 'str', 'a|b|c' for a Literal, 'list[int]', 'int?'."""
    origin = get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        name = " or ".join(type_name(a) for a in args)
        return f"{name}?" if len(args) < len(get_args(tp)) else name
    if origin in (list, tuple):
        inner = get_args(tp)
        return f"list[{type_name(inner[0]) if inner else 'any'}] (comma separated)"
    if origin is dict:
        return "table"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def default_text(value: Any) -> str:
    """A default as it would be written on the command line ('' shows as "''", lists comma separated)."""
    if value is dataclasses.MISSING:
        return "required"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value) if value == "" or " " in value else value
    if isinstance(value, (list, tuple)):
        return ",".join(default_text(v) for v in value) if value else "(empty)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sections(root: type = RunConfig) -> list[SectionHelp]:
    """The sections of `root` (a dataclass whose fields are dataclasses or lists of them), in field order."""
    out = []
    hints = _hints(root)
    for f in dataclasses.fields(root):
        tp = hints[f.name]
        many = get_origin(tp) is list
        cls = get_args(tp)[0] if many else tp
        if not dataclasses.is_dataclass(cls):
            continue
        name = "[[sae]] (--sae.FIELD sets every [[sae]] table, --saes.N.FIELD the N-th)" if many else f"[{f.name}]"
        out.append(section_help(name, "sae" if f.name == "saes" else f.name, cls))
    return out


def section_help(name: str, prefix: str, cls: type) -> SectionHelp:
    """One section's help: the dataclass `cls`'s fields as `--PREFIX.FIELD` flags with type, default, docstring."""
    docs, cls_hints = field_docs(cls), _hints(cls)
    fields = [
        FieldHelp(f"--{prefix}.{g.name}", type_name(cls_hints[g.name]), default_text(_default(g)), docs.get(g.name, ""))
        for g in dataclasses.fields(cls)
    ]
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    return SectionHelp(name, doc, fields)


def undocumented(root: type = RunConfig) -> list[str]:
    """Flags of fields without a docstring (a test keeps this empty)."""
    return [f.flag for s in sections(root) for f in s.fields if not f.doc]


def format_config_help(width: int = 100, root: type = RunConfig, extra: Sequence[SectionHelp] = ()) -> str:
    """All config fields, grouped by section: flag, type, default, then the docstring indented below.

    `extra` sections come first (a verb's own table, e.g. `study`'s `[study]`)."""
    lines = [
        "config fields (TOML [section] keys; override any with --section.field VALUE or --section.field=VALUE):"
    ]
    for section in [*extra, *sections(root)]:
        lines += ["", f"{section.name}"]
        if section.doc:
            lines += textwrap.wrap(section.doc, width, initial_indent="  ", subsequent_indent="  ")
        for f in section.fields:
            lines.append(f"  {f.flag} {f.type}  (default: {f.default})")
            doc = " ".join(f.doc.split()) or "(undocumented)"
            lines += textwrap.wrap(doc, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
