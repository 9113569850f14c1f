"""The one way saeseeds hashes bytes and tensors (SHA-256), so every fingerprint in run.json, cache manifests and
ground-truth files is computed the same way and stays byte-identical across releases.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
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


FILE_CHUNK = 1 << 22
"""Bytes read at a time when hashing a file (4 MiB: a big state file is never held in memory twice)."""


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes, read in chunks (the `sha256sum` of the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(FILE_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashingWriter:
    """A binary file wrapper that SHA-256-hashes every byte written through it (e.g. by torch.save), so a
    writer learns its file's digest without reading the file back."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.digest = fh, hashlib.sha256()

    def write(self, data: BytesLike) -> int:
        """Hash `data`, then write it."""
        self.digest.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def hexdigest(self) -> str:
        """The hex SHA-256 of everything written so far (`file_sha256` of the finished file)."""
        return self.digest.hexdigest()
