"""The one rule for names that become path components (hookpoints, SAE names, seed folders, paths read from records).

A name from a config, a flag or a record (run.json) is joined to an output directory, so it must stay one visible
level inside it: `name_problem` is the single check every such place goes through (`check_name`, `check_relative`,
and `config.checks.check_dir_name` / `check_hookpoint`). Hugging Face module names contain dots
(`gpt_neox.layers.6.mlp`) and stay valid directory names as they are; what is refused is what escapes or hides:
separators, '.', '..', a leading dot, control characters, over-long names. Labels that are free text (a set's label
in a compare output) are mapped to a safe component by `safe_slug` instead.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath, PureWindowsPath

from saeseeds.errors import SaeseedsError
from saeseeds.run_layout import RUN_TOP_LEVEL  # noqa: F401  (re-exported: config.checks, api.exporting)

NAME_MAX_BYTES = 200
"""Longest name accepted (UTF-8 bytes): below the 255-byte NAME_MAX, leaving room for the suffixes saeseeds adds."""
NAME_RULE = "one folder name: no '/' or '\\', not '.' or '..', no leading dot, no surrounding spaces or control characters"
"""What `name_problem` allows, in words (for error messages)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_problem(value: object) -> str | None:
    """Why `value` cannot be used as one path component inside an output directory, or None when it can."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if not value:
        return "is empty"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value in (".", ".."):
        return "is a relative link ('.' or '..'), not a name"
    if value.startswith("."):
        return "starts with a dot (a hidden name)"
    if value != value.strip():
        return "starts or ends with white space"
    if _CONTROL.search(value):
        return "contains a control character"
    if PureWindowsPath(value).drive:
        return "is a drive name"
    if len(os.fsencode(value)) > NAME_MAX_BYTES:
        return f"is longer than {NAME_MAX_BYTES} bytes"
    return None


def check_name(value: object, what: str, error: type[SaeseedsError], reserved: frozenset[str] = frozenset(),
               note: str = "") -> str:
    """`value` when it is a valid path component (`name_problem`) and not in `reserved`; else `error` naming `what`."""
    problem = name_problem(value)
    if problem is None and value in reserved:
        problem = f"is reserved for the run's own files ({', '.join(sorted(reserved))})"
    if problem is not None:
        allowed = NAME_RULE + (f" ({note})" if note else "")
        raise error(f"{what} = {value!r} is not a valid directory name: it {problem}; allowed: {allowed}")
    return str(value)


def check_relative(value: object, what: str, error: type[SaeseedsError]) -> PurePosixPath:
    """`value` as a relative path whose every part is a valid name: it stays inside the directory it is joined to."""
    if not isinstance(value, str) or not value:
        raise error(f"{what} = {value!r} is not a relative path; allowed: folder names joined by '/'")
    if value.startswith(("/", "\\")) or PureWindowsPath(value).drive:
        raise error(f"{what} = {value!r} is an absolute path; allowed: a path inside the directory")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts:
        raise error(f"{what} = {value!r} names the directory itself, not a path inside it")
    for part in parts:
        problem = name_problem(part)
        if problem is not None:
            raise error(f"{what} = {value!r} is not a plain path inside the directory: its part {part!r} {problem}")
    return PurePosixPath(*parts)


def safe_slug(text: str) -> str:
    """A valid name (`name_problem`) made from free text: unsafe characters become '_', leading dots go."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_").lstrip(".")
    raw = slug.encode()[:NAME_MAX_BYTES].decode(errors="ignore")
    return raw if name_problem(raw) is None else "x"
