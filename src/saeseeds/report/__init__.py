"""Figures, HTML pages and the one-page report of saeseeds outputs.

`saeseeds.report` is both this package and, through `import saeseeds as ss`, the function `ss.report(path,
out=None)` (`saeseeds.api.report.report`): once the package is imported, Python binds the name `report` of
`saeseeds` to it, so the package itself is callable and forwards to the function.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """This package, callable as `saeseeds.api.report.report`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from saeseeds.api.report import report

        return report(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
