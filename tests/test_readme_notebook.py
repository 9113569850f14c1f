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
    assert len(analyses) == 1 and analyses[0].sae_name == "topk-64"  # type: ignore[index,attr-defined]
    lines = capsys.readouterr().out.strip().splitlines()
    # numbers that mean something: the planted features are found by several seeds, and the stable latents
    # carry most of the reconstruction; 2 control draws cannot decide the test, and the reason says so
    shared = float(lines[0].split()[1].rstrip("%"))
    assert 10 <= shared <= 90, lines[0]
    share, holds, reason = lines[-1].split(" ", 2)
    assert float(share) > 0.5 and holds == "None" and "control draws" in reason
    assert (tmp_path / "runs" / "notebook" / "run.json").is_file()
