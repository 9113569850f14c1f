"""`ss.study` stays the API function when the subpackage `saeseeds.study` is imported (Python binds a subpackage on
its parent, over a name the parent resolves lazily), and `import saeseeds.study` keeps giving the package."""

from __future__ import annotations

import pytest

import saeseeds as ss


def test_ss_study_calls_the_api_function_after_the_package_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import saeseeds.api.study as api_study
    import saeseeds.study  # noqa: F401 - binds the package on saeseeds

    calls = []
    monkeypatch.setattr(api_study, "study", lambda *args, **kwargs: calls.append((args, kwargs)) or "ran")
    assert ss.study("cfg.toml", "out", resume=True) == "ran"
    assert calls == [(("cfg.toml", "out"), {"resume": True})]


def test_the_study_package_still_imports_as_a_package() -> None:
    import saeseeds.study as package
    from saeseeds.study import grid_points
    from saeseeds.study.grid import grid_points as defined

    assert grid_points is defined and package.grid_points is defined
    assert package.__name__ == "saeseeds.study" and package.__file__.endswith("__init__.py")
