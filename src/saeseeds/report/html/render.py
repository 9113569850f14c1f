"""Render a report page through the packaged jinja2 templates (autoescape on) and write it atomically, never
over a file that is not a saeseeds report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2

from saeseeds.atomic import atomic_write_text
from saeseeds.errors import ConfigError
from saeseeds.report.html.blocks import Section
from saeseeds.version import __version__

GENERATOR = f"saeseeds report {__version__}"
"""The page's `<meta name="generator">`: how an earlier report is recognised (and may be replaced)."""
SIGNATURE = '<meta name="generator" content="saeseeds report'
HEAD_BYTES = 4096


@dataclass
class Page:
    title: str
    root: str
    generated: str
    versions_line: str
    description: str
    sections: list[Section] = field(default_factory=list)

    @property
    def kinds(self) -> list[tuple[str, int]]:
        """How many sections of each kind, for the overview's chips."""
        return sorted(Counter(s.kind for s in self.sections if s.kind != "headline").items())


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates under saeseeds/report/templates; HTML is autoescaped, the included CSS and JS are not."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("saeseeds", "report/templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(page: Page) -> str:
    """The page's HTML text."""
    return environment().get_template("page.html").render(page=page, generator=GENERATOR)


def is_report(path: Path) -> bool:
    """True when `path` is a page this module wrote (its head carries the generator signature)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return False
    return SIGNATURE.encode() in head


def check_report_target(path: Path) -> None:
    """Refuse an `--out` that is a directory, sits under a file, or is an existing file that is no report."""
    if path.is_dir():
        raise ConfigError(f"--out {path}: is a directory; give the HTML file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--out {path}: {parent} is a file, not a directory")
            break
    if (path.exists() or path.is_symlink()) and not is_report(path):
        raise ConfigError(f"--out {path}: exists and is not a saeseeds report; it is never overwritten, "
                          "choose another file")


def write_page(path: Path, html: str) -> Path:
    """Write the page atomically at `path` (checked again just before)."""
    check_report_target(path)
    atomic_write_text(path, html)
    return path
