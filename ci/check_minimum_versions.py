"""Checks that the minimum-versions venv (`make test-min`) holds exactly the floors pyproject.toml declares.

Run with that venv's python after `pip install -c ci/minimum-versions.txt -e ".[logging]"`. For every runtime
dependency of saeseeds (`[project].dependencies` whose marker applies here, and the `logging` extra) the installed
release must equal its `>=` floor, so the tests that follow run against the lowest versions we claim to support,
and a floor raised or lowered in pyproject.toml without ci/minimum-versions.txt (or the reverse) fails here
instead of testing something else.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def release(v: str) -> tuple[int, ...]:
    """1.24 and 1.24.0 alike; 2.13.0+cpu as 2.13.0."""
    parts = list(Version(v).release)
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["logging"]
    problems, lines = [], []
    for text in deps:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        floors = [s.version for s in req.specifier if s.operator == ">="]
        if len(floors) != 1:
            problems.append(f"{req.name}: no single >= floor in pyproject.toml ({text!r})")
            continue
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            problems.append(f"{req.name}: not installed")
            continue
        lines.append(f"  {req.name:<16} floor {floors[0]:<7} installed {installed}")
        if release(installed) != release(floors[0]):
            problems.append(f"{req.name}: installed {installed}, but pyproject.toml declares >={floors[0]} "
                            "(pin the floor in ci/minimum-versions.txt, or raise it in pyproject.toml)")
    print("minimum versions under test:\n" + "\n".join(lines))
    for p in problems:
        print("error:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
