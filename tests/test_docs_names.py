"""Every Python name that docs/interfaces.md and docs/design.md give exists, so the docs cannot drift from the code
unnoticed (as the README's notebook test does for the README): dotted `saeseeds.…` names, `from saeseeds.… import`
lines, `ss.…` names, and design.md's `path/module.py: Name` homes."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import saeseeds

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOTTED = re.compile(r"(?<![\w/.])saeseeds(?:\.\w+)+(?![\w/])")
"""`saeseeds.x.y`, not a schema name (`saeseeds.compare/1`) nor a file path."""
FROM_IMPORT = re.compile(r"from (saeseeds(?:\.\w+)*) import ([\w, ]+)")
PUBLIC = re.compile(r"(?<![\w.])ss\.(\w+)")
HOME = re.compile(r"`((?:\w+/)*\w+)\.py: ?(\w+)")
"""design.md's `align/sharing.py: SharingRule`: the module under src/saeseeds/ and a name it defines."""


def resolve(dotted: str) -> object:
    """The object a dotted name names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def names_in(text: str) -> list[str]:
    """Every name `text` gives, as a dotted path to resolve."""
    found = DOTTED.findall(text)
    for module, names in FROM_IMPORT.findall(text):
        found += [f"{module}.{name.strip()}" for name in names.split(",") if name.strip()]
    found += [f"saeseeds.{name}" for name in PUBLIC.findall(text)]
    found += [f"saeseeds.{path.replace('/', '.')}.{name}" for path, name in HOME.findall(text)]
    return sorted(set(found))


@pytest.mark.parametrize("doc", ["interfaces.md", "design.md"])
def test_every_name_the_docs_give_exists(doc: str) -> None:
    names = names_in((DOCS / doc).read_text())
    assert len(names) >= 10, names  # the patterns still find the doc's names
    missing = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as err:
            missing.append(f"{name} ({type(err).__name__})")
    assert not missing, f"docs/{doc} names what the code does not have: {', '.join(missing)}"


def test_the_patterns_tell_names_from_schemas_and_paths() -> None:
    text = ("`saeseeds.compare/1` in src/saeseeds/sae/model.py; `saeseeds.sae.checkpoint.save_sae`, ss.train, "
            "from saeseeds.align import SharingRule, align_seeds  # note\n`align/sharing.py: SharingRule`")
    assert names_in(text) == ["saeseeds.align", "saeseeds.align.SharingRule", "saeseeds.align.align_seeds",
                              "saeseeds.align.sharing.SharingRule", "saeseeds.sae.checkpoint.save_sae",
                              "saeseeds.train"]
    assert resolve("saeseeds.sae.checkpoint.save_sae") is saeseeds.sae.save_sae
    with pytest.raises(AttributeError):
        resolve("saeseeds.pooling.unfold")
