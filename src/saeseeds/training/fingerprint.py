"""The data fingerprint: a hash chained over every batch in training order, proving that SAEs saw the same data."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from saeseeds.hashing import sha256_hex, tensor_digest

__all__ = ["DataFingerprint", "fingerprint_batches", "tensor_digest"]

FINGERPRINT_SEED = b"saeseeds-fingerprint-v1"
"""Hashed to give the chain's start value, so an empty fingerprint is a fixed, recognisable string."""


class DataFingerprint:
    """h_t = SHA-256(h_{t−1} ‖ digest(batch_t)); equal values mean equal batches in equal order."""

    def __init__(self, value: str = "", batches: int = 0) -> None:
        self.value = value or sha256_hex(FINGERPRINT_SEED)
        self.batches = batches

    def update(self, batch: Mapping[str, Tensor]) -> None:
        """Fold one batch (hookpoint → tensor) into the chain."""
        digests = [tensor_digest(name, batch[name]) for name in sorted(batch)]
        self.value = sha256_hex(bytes.fromhex(self.value), *digests)
        self.batches += 1


def fingerprint_batches(batches: list[Mapping[str, Tensor]]) -> str:
    """Fingerprint of a whole list of batches (e.g. the evaluation set)."""
    fp = DataFingerprint()
    for batch in batches:
        fp.update(batch)
    return fp.value
