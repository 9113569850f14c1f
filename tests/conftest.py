"""Shared test settings: offline Hugging Face, few threads (CI has 2 cores), no progress bars, CLI logging undone."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _undo_cli_logging():
    """A test that runs `saeseeds.cli.main` in-process sets up logging as the CLI does; later tests start without."""
    yield
    from saeseeds.log import reset_logging

    reset_logging()


@pytest.fixture(scope="module")
def one_thread():
    """One CPU thread for torch and numba for a module of tiny SAEs (extra threads only synchronise, slow on a busy
    2-core box); a module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    from saeseeds.threads import cpu_threads

    with cpu_threads(1):
        yield


@pytest.fixture
def restore_quiet(monkeypatch: pytest.MonkeyPatch):
    """Undo what --quiet / --verbose change process-wide: our quiet flag, the HF environment variables and the
    libraries' log levels."""
    import logging

    from saeseeds import progress

    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)
    levels = {n: logging.getLogger(n).level for n in ("transformers", "datasets", "huggingface_hub")}
    yield
    progress.set_quiet(False)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
