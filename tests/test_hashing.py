"""Pinned digests: run.json data fingerprints, cache shard hashes, token and ground-truth fingerprints must never
change, or every existing run directory and activation cache would fail to verify.

The expected values were computed with the hashing code as it was before `saeseeds.hashing` existed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from saeseeds.data.corpus import fingerprint_tokens
from saeseeds.data.synthetic import GroundTruth
from saeseeds.hashing import sha256_hex
from saeseeds.training.fingerprint import DataFingerprint, fingerprint_batches, tensor_digest

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _truth() -> GroundTruth:
    """A small fixed ground truth (the config is not part of the fingerprint)."""
    return GroundTruth(
        directions=torch.linspace(-1, 1, 6).view(2, 3),
        scales=torch.tensor([1.0, 2.5]),
        firing_prob=torch.tensor([0.05, 0.125]),
        mean_magnitude=torch.tensor([1.0, 3.0]),
        group=torch.tensor([0, -1]),
        kind=torch.tensor([2, 0]),
        group_kind=torch.tensor([2]),
        config=None,  # type: ignore[arg-type]
    )


def test_token_fingerprint_is_pinned() -> None:
    """int32 input is widened to little-endian int64 before hashing, tensors in order."""
    ids = torch.arange(12, dtype=torch.int32).view(3, 4)
    assert fingerprint_tokens(ids, torch.tensor([[5, -1]])) == (
        "c780bfd484f61bc6758a8b9d65a5086e748567835172fb272c3e9059f97b2682"
    )
    assert fingerprint_tokens() == EMPTY_SHA256


def test_cache_shard_hash_is_pinned() -> None:
    """Cache manifests store the plain sha256 hex of each shard file's bytes."""
    assert sha256_hex(b"saeseeds activation cache") == (
        "7d54c76db6d1803e4d9a047dbdd6c8758df1411e463471d9b5915c09be352102"
    )
    assert sha256_hex(b"") == EMPTY_SHA256


def test_ground_truth_fingerprint_is_pinned() -> None:
    """ground_truth.json stores this hash; load_ground_truth rejects files whose tensors do not match it."""
    assert _truth().fingerprint() == "4d0c6ad794ea75e4b252b48507c446d3b95940d55e256102342c4e3d5d324f78"


def test_tensor_digest_is_pinned() -> None:
    """Name, dtype, shape and raw bytes (bfloat16 via its int16 view; non-contiguous made contiguous)."""
    f32 = tensor_digest("blocks.0", torch.linspace(0, 1, 6).view(2, 3))
    bf16 = tensor_digest("h", torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.bfloat16))
    i64_t = tensor_digest("ids", torch.arange(6).view(2, 3).T)
    assert f32.hex() == "a48196e3cc6ce7777969ef7b4d529f73a5dc4d232f2bb3b526aaf11071fe2d34"
    assert bf16.hex() == "6dd5fe4969c1b901f28215bcadbd0585f731aabfe0ee3713459d3142c8a25290"
    assert i64_t.hex() == "f90704734a7071634fa4f15caa7fd4549e9c2510c48fbc10007dfab421b7d3d6"


def test_data_fingerprint_chain_is_pinned() -> None:
    """The run.json data fingerprint: a fixed start value, then one link per batch, hookpoints sorted."""
    assert DataFingerprint().value == "9e08bef205e438c7e7fc3db9ab5817024f15f01f355a12ef6bf3a945a5eb6b6e"
    b1 = {"b": torch.ones(2, 2), "a": torch.zeros(1, 3)}
    b2 = {"a": torch.arange(3.0).view(1, 3), "b": torch.full((2, 2), 0.5)}
    assert fingerprint_batches([b1, b2]) == (
        "9a24852615248b4ce64947ee9dd8b1982f673d70fd1f7f892c8ff520447358b5"
    )


def test_digest_changes_with_one_element() -> None:
    """A guard against a digest that ignores the data: one changed value gives another hash."""
    t = torch.linspace(0, 1, 6).view(2, 3)
    u = t.clone()
    u[1, 2] = float(np.nextafter(np.float32(1.0), np.float32(2.0)))
    assert tensor_digest("x", t) != tensor_digest("x", u)
    assert sha256_hex(b"a") == hashlib.sha256(b"a").hexdigest()
