"""The one device resolver: 'auto' (or None / '') means the first CUDA device when present, else the CPU; and the
dtype a model runs in there (`resolve_dtype`).

A bad name ('cuda' without a GPU, 'tpu', 'cuda:7' on a 1-GPU box) is a user error with one clear line,
not a torch traceback halfway through a run.
"""

from __future__ import annotations

import torch

from saeseeds.errors import ConfigError, DataError


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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""What a model dtype may be named besides 'auto'."""


def resolve_dtype(name: str, device: torch.device, *, field: str = "lm.model_dtype") -> torch.dtype:
    """'auto' → bfloat16 on CUDA, float32 elsewhere (CPU bf16 matmuls are slow and inexact)."""
    if name in ("", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise DataError(f"{field}: {name!r} is not one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]
