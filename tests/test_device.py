"""resolve_device: 'auto' picks CUDA when present, bad names are a one-line ConfigError naming the field."""

from __future__ import annotations

import pytest
import torch

from saeseeds.device import resolve_device
from saeseeds.errors import ConfigError


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the machine has no CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the machine has exactly one CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name", ["auto", "", None])
def test_auto_is_cpu_without_a_gpu(no_gpu: None, name: str | None) -> None:
    """auto, '' and None all mean: the first CUDA device if any, else the CPU."""
    assert resolve_device(name) == torch.device("cpu")


def test_auto_is_cuda_with_a_gpu(one_gpu: None) -> None:
    """With a GPU, auto is CUDA; cuda:0 exists."""
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda:0")


def test_explicit_cpu_and_device_objects_pass_through(one_gpu: None) -> None:
    """'cpu' stays on the CPU even with a GPU; a torch.device is returned as given."""
    assert resolve_device("cpu") == torch.device("cpu")
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", "cpu:0:1"])
def test_bad_name_is_one_line_config_error(name: str) -> None:
    """A name torch cannot parse, or a device type saeseeds does not run on, names the field in one line."""
    with pytest.raises(ConfigError) as info:
        resolve_device(name, field="train.device")
    message = str(info.value)
    assert message.startswith("train.device: ") and repr(name) in message and "\n" not in message


def test_cuda_without_a_gpu_is_a_config_error(no_gpu: None) -> None:
    """Asking for CUDA on a CPU-only machine fails at once, not halfway through a run."""
    with pytest.raises(ConfigError, match=r"^lm\.device: 'cuda' asked for, but no CUDA device is available"):
        resolve_device("cuda", field="lm.device")


def test_cuda_index_beyond_the_gpus_is_a_config_error(one_gpu: None) -> None:
    """cuda:3 on a one-GPU machine names how many devices exist."""
    with pytest.raises(ConfigError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_lm_loader_uses_the_resolver(no_gpu: None) -> None:
    """The LM source rejects a bad lm.device before loading any model."""
    from saeseeds.config import LmConfig
    from saeseeds.data.lm_source import load_language_model

    with pytest.raises(ConfigError, match=r"^lm\.device: 'cuda'"):
        load_language_model(LmConfig(device="cuda"))


def test_similarity_uses_the_resolver() -> None:
    """Cross-seed similarity rejects a bad device name with the same one-line error."""
    from saeseeds.align import max_cosine_assignment
    from saeseeds.align.screen_choice import plan_screen

    a = torch.eye(3)
    with pytest.raises(ConfigError, match="not a device|not a supported device"):
        plan_screen(device="tpu")
    assert max_cosine_assignment(a, a, device="cpu").partner.tolist() == [0, 1, 2]
