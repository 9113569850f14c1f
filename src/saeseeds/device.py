"""The one device resolver: 'auto' (or None / '') means the first CUDA device when present, else the CPU.

A bad name ('cuda' without a GPU, 'tpu', 'cuda:7' on a 1-GPU box) is a user error with one clear line,
not a torch traceback halfway through a run.
"""

from __future__ import annotations

import torch

from saeseeds.errors import ConfigError


def resolve_device(name: str | torch.device | None = "auto", *, field: str = "device") -> torch.device:
    """The torch device for `name`; `field` names the config field or flag in the error message."""
    if isinstance(name, torch.device):
        return name
    if name is None or name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"{field}: {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{field}: {name!r} asked for, but no CUDA device is available (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{field}: {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif device.type not in ("cpu", "mps", "xpu", "meta"):
        raise ConfigError(f"{field}: {name!r} is not a supported device (use auto, cpu, cuda or cuda:N)")
    return device
