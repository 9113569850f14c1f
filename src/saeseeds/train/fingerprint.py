"""The data fingerprint: a hash chained over every batch in training order, proving that SAEs saw the same data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor


def tensor_digest(name: str, tensor: Tensor) -> bytes:
    """SHA-256 of a tensor's name, dtype, shape and bytes (moved to CPU, contiguous)."""
    t = tensor.detach().to("cpu").contiguous()
    h = hashlib.sha256()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.digest()


class DataFingerprint:
    """h_t = SHA-256(h_{t−1} ‖ digest(batch_t)); equal values mean equal batches in equal order."""

    def __init__(self, value: str = "", batches: int = 0) -> None:
        self.value = value or hashlib.sha256(b"saeseeds-fingerprint-v1").hexdigest()
        self.batches = batches

    def update(self, batch: Mapping[str, Tensor]) -> None:
        """Fold one batch (hookpoint → tensor) into the chain."""
        h = hashlib.sha256(bytes.fromhex(self.value))
        for name in sorted(batch):
            h.update(tensor_digest(name, batch[name]))
        self.value = h.hexdigest()
        self.batches += 1


def fingerprint_batches(batches: list[Mapping[str, Tensor]]) -> str:
    """Fingerprint of a whole list of batches (e.g. the evaluation set)."""
    fp = DataFingerprint()
    for batch in batches:
        fp.update(batch)
    return fp.value
