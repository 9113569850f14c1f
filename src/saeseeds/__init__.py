"""saeseeds: train sparse autoencoders over many seeds on one data stream and find which features are real.

`import saeseeds as ss` gives the Python API (`ss.train`, `ss.load`, `ss.compare`, `ss.analyze`, ...; see
`saeseeds.api`). The names are resolved on first use so that `import saeseeds` (and the CLI) start fast.
"""

from __future__ import annotations

import logging as _logging
import sys as _sys
import types as _types
from typing import Any

from saeseeds import api as _api  # cheap: its names resolve on first use
from saeseeds.config.architectures import provide_architectures as _provide_architectures
from saeseeds.version import __version__  # noqa: F401  (re-exported)

_logging.getLogger(__name__).addHandler(_logging.NullHandler())  # a library configures no logging (saeseeds.log)


def _architectures() -> Any:
    """The model layer's registry, for config's seam (config sits below the model and never imports it)."""
    from saeseeds.sae.registry import registered  # importing saeseeds.sae registers the built-ins

    return registered()


_provide_architectures(_architectures)


def __getattr__(name: str) -> Any:
    """Resolve the public API lazily from `saeseeds.api`."""
    if name in _api.__all__:  # resolved by the API's map: `saeseeds.api.study` may be bound as a submodule too
        return _api.__getattr__(name)
    raise AttributeError(f"module 'saeseeds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_api.__all__])


class _ApiPackage(_types.ModuleType):
    """A subpackage named like an API function (`saeseeds.study`): calling it calls that function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api.__getattr__(self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Saeseeds(_types.ModuleType):
    """`saeseeds` itself. Importing a subpackage named like an API function (`import saeseeds.study`) makes Python
    bind the package here, over the function `ss.study`; the package is then made callable as that function, so
    `ss.study(...)` keeps calling `saeseeds.api.study.study` and `import saeseeds.study` keeps the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _api.__all__ and type(value) is _types.ModuleType:
            value.__class__ = _ApiPackage
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Saeseeds
