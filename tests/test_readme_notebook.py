"""The README's notebook session runs as written (the public Python API works end to end)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def notebook_block() -> str:
    """The python block right after the `<!-- notebook -->` marker."""
    match = re.search(r"<!-- notebook -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README.md has no <!-- notebook --> python block"
    return match.group(1)


def test_readme_notebook_session_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    code = notebook_block()
    assert len([line for line in code.splitlines() if line.strip()]) <= 14
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    result = namespace["result"]
    assert result.num_seeds == 3 and len(result.alignments) == 6  # type: ignore[attr-defined]
    strict = namespace["strict"]
    assert strict.rule.stability == "reappears" and strict.alignments is not None  # type: ignore[attr-defined]
    analyses = namespace["analyses"]
    assert len(analyses) == 1 and analyses[0].sae_name == "topk-128"  # type: ignore[index,attr-defined]
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith(" 128")
    assert (tmp_path / "runs" / "notebook" / "run.json").is_file()
