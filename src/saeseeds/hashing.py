"""The one way saeseeds hashes bytes and tensors (SHA-256), so every fingerprint in run.json, cache manifests and
ground-truth files is computed the same way and stays byte-identical across releases.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

BytesLike = bytes | bytearray | memoryview
"""Anything hashlib accepts as input."""


def sha256_digest(*parts: BytesLike) -> bytes:
    """The raw 32-byte SHA-256 of `parts` fed in order (no separators: the caller frames them if needed)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def sha256_hasher() -> Any:
    """An incremental SHA-256 (`.update(bytes)`, `.hexdigest()`) for data hashed piece by piece."""
    return hashlib.sha256()


def sha256_hex(*parts: BytesLike) -> str:
    """The hex SHA-256 of `parts` fed in order; with one part, the usual `sha256sum` of those bytes."""
    return sha256_digest(*parts).hex()


def tensor_bytes(tensor: Tensor, numpy_dtype: str | None = None) -> bytes:
    """The raw bytes of `tensor` (detached, on the CPU, C-contiguous); bfloat16 is read through its int16 view.

    `numpy_dtype` (e.g. '<i8') converts the values first, pinning width and byte order.
    """
    t = tensor.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    array = np.ascontiguousarray(t.numpy())
    if numpy_dtype is not None:
        array = array.astype(numpy_dtype)
    return array.tobytes()


def tensor_digest(name: str, tensor: Tensor) -> bytes:
    """Raw SHA-256 of a named tensor: its name, dtype and shape as a header, then its bytes (`tensor_bytes`)."""
    header = f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode()
    return sha256_digest(header, tensor_bytes(tensor))
