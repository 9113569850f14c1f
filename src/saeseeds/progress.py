"""Progress bars only where someone watches them: on a terminal.

Every bar of saeseeds is made by `tqdm` from this module: it is tqdm's, except that it stays silent when stderr is
not a terminal (a log file, a pipe, a test capturing stderr), so a failing command prints its one error line and
nothing else. `quiet_libraries()` does the same for the bars of transformers / datasets / huggingface_hub.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm as _tqdm


def on_terminal() -> bool:
    """True when stderr (where bars go) is an interactive terminal."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class tqdm(_tqdm):  # noqa: N801 - a drop-in for tqdm.tqdm
    """`tqdm.tqdm`, disabled off-terminal whatever `disable` says."""

    def __init__(self, *args: Any, disable: bool | None = False, **kwargs: Any) -> None:
        super().__init__(*args, disable=bool(disable) or not on_terminal(), **kwargs)


def quiet_libraries() -> None:
    """Silence the progress bars of the Hugging Face libraries (model loading, datasets) off-terminal."""
    if on_terminal():
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except (ImportError, AttributeError):
        pass
