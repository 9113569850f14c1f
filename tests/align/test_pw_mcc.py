"""PW-MCC (Song et al. 2025): the mean decoder cosine over the Hungarian matching, beside MMCS (max per latent)."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from saeseeds.align.cross_seed import CrossSeedResult, align_seeds, pw_mcc
from saeseeds.align.pair import align_weights


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_planted_permutation_with_noise_gives_the_hand_computed_pw_mcc() -> None:
    rng = np.random.default_rng(0)
    a = _unit(rng.standard_normal((12, 32)))
    perm = rng.permutation(12)
    b = _unit(a[perm] + 0.15 * rng.standard_normal((12, 32)))  # b's latent j is a's latent perm[j], noisy
    al = align_weights(torch.tensor(a, dtype=torch.float32), torch.tensor(a, dtype=torch.float32),
                       torch.tensor(b, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    inverse = np.argsort(perm)  # a's latent i sits at b's row inverse[i]
    assert (al.dec_partner == inverse).all()
    by_hand = float(np.mean([a[i] @ b[inverse[i]] for i in range(12)]))
    assert math.isclose(pw_mcc(al), by_hand, rel_tol=1e-6)
    assert by_hand < 0.999  # the noise is there: a PW-MCC of 1 would not test the cosines


def test_pw_mcc_differs_from_mmcs_when_one_latent_of_b_is_the_max_of_two() -> None:
    e = np.eye(3)
    a = _unit(np.stack([e[0], e[0] + 0.5 * e[1]]))  # both of a's latents are closest to b's first
    b = np.stack([e[0], e[2]])
    t = [torch.tensor(x, dtype=torch.float32) for x in (a, a, b, b)]
    al = align_weights(*t)
    second = float(a[1] @ e[0])  # 2 / sqrt(5)
    assert math.isclose(al.mmcs, (1.0 + second) / 2, rel_tol=1e-6)  # MMCS counts b's first latent twice
    assert list(al.dec_partner) == [0, 1]  # one to one: a's second latent must take b's orthogonal one
    assert math.isclose(pw_mcc(al), 0.5, abs_tol=1e-7)


def test_unequal_sizes_average_the_matched_pairs_only_and_the_result_stores_pw_mcc(tmp_path) -> None:
    rng = np.random.default_rng(1)
    a = _unit(rng.standard_normal((5, 8)))
    b = a[:3].copy()  # b holds three of a's five latents exactly
    weights = [(torch.tensor(x, dtype=torch.float32),) * 2 for x in (a, b)]
    result = align_seeds(weights, ["a", "b"])
    forward, back = result.alignments[(0, 1)], result.alignments[(1, 0)]
    assert int((forward.dec_partner >= 0).sum()) == 3  # two of a's latents stay unmatched (cosine NaN)
    assert math.isclose(pw_mcc(forward), 1.0, rel_tol=1e-6) and math.isclose(pw_mcc(back), 1.0, rel_tol=1e-6)
    assert forward.mmcs < 1.0  # the unmatched two still have a max cosine below 1
    stats = result.summary()["pw_mcc"]
    assert math.isclose(stats["mean"], 1.0, rel_tol=1e-6) and stats["std"] < 1e-9
    result.save(tmp_path / "r")
    record = json.loads((tmp_path / "r" / "cross_seed.json").read_text())
    assert math.isclose(record["pairs"][0]["pw_mcc"], 1.0, rel_tol=1e-6)
    assert math.isclose(CrossSeedResult.load(tmp_path / "r").pw_mcc_stats()["mean"], 1.0, rel_tol=1e-6)
