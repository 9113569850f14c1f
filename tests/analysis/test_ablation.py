"""Tests of latent ablation: set construction, reconstruction with latents removed, and FVU per set."""

from __future__ import annotations

import pytest
import torch

from saeseeds.analysis.ablation import (
    ablate_code,
    ablation_fvu,
    ablation_table,
    build_ablation_sets,
    z_score,
)
from saeseeds.config import SaeConfig
from saeseeds.errors import DataError
from saeseeds.sae.model import SparseAutoencoder


def _sae(arch: str, seed: int = 0) -> SparseAutoencoder:
    g = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SaeConfig(architecture=arch, num_latents=48, k=6), 16, generator=g)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(16, generator=g) * 0.5)
        sae.encoder.bias.copy_(torch.randn(48, generator=g) * 0.1)
    return sae.eval()


def _data(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(50, 16, generator=g) + 1.0 for _ in range(4)]


def _whole_set_fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    x, x_hat = x.double(), x_hat.double()
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_ablating_nothing_changes_nothing_and_everything_leaves_b_dec(arch: str) -> None:
    sae, batches = _sae(arch), _data()
    sets = build_ablation_sets(torch.zeros(48, dtype=torch.bool), torch.zeros(48, dtype=torch.bool), n_random=1)
    fvu = ablation_fvu(sae, batches, sets)
    x = torch.cat(batches)
    with torch.no_grad():
        plain = sae.decode(sae.encode(x))
    assert fvu["none"] == pytest.approx(_whole_set_fvu(x, plain), rel=1e-6)
    zero = sae.b_dec.detach().expand_as(x)
    assert fvu["all"] == pytest.approx(_whole_set_fvu(x, zero), rel=1e-6)
    assert fvu["all"] > 1.0  # b_dec differs from the data mean
    assert fvu["stable"] == pytest.approx(fvu["none"])  # an empty set is "nothing"


def test_ablated_code_decodes_like_dense_with_columns_zeroed() -> None:
    sae = _sae("relu")
    x = _data()[0]
    mask = torch.zeros(48, dtype=torch.bool)
    mask[::3] = True
    with torch.no_grad():
        dense = sae.encode_dense(x)
        want = sae.decode_dense(dense.masked_fill(mask, 0))
        got = sae.decode(ablate_code(sae.encode(x), mask))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(want, sae.decode_dense(dense).detach(), atol=1e-3)


def test_ablation_fvu_uses_the_whole_set_mean_and_orders_sets() -> None:
    sae, batches = _sae("topk"), _data()
    x = torch.cat(batches)
    stable = torch.zeros(48, dtype=torch.bool)
    stable[:24] = True
    sets = build_ablation_sets(stable, ~stable, n_random=2, generator=torch.Generator().manual_seed(0))
    fvu = ablation_fvu(sae, batches, sets)
    with torch.no_grad():
        want = _whole_set_fvu(x, sae.decode(ablate_code(sae.encode(x), stable)))
    assert fvu["stable"] == pytest.approx(want, rel=1e-6)
    assert fvu["stable"] != pytest.approx(fvu["none"])  # an untrained SAE: no order is implied


def test_build_ablation_sets_sizes_pool_and_determinism() -> None:
    stable = torch.zeros(40, dtype=torch.bool)
    stable[:6] = True
    unstable = torch.zeros(40, dtype=torch.bool)
    unstable[30:] = True
    pool = torch.ones(40, dtype=torch.bool)
    pool[35:] = False
    a = build_ablation_sets(stable, unstable, n_random=4, pool=pool, generator=torch.Generator().manual_seed(5))
    b = build_ablation_sets(stable, unstable, n_random=4, pool=pool, generator=torch.Generator().manual_seed(5))
    names = [s.name for s in a]
    assert names[:3] == ["none", "stable", "unstable"] and names[-1] == "all"
    for s, t in zip(a, b):
        assert torch.equal(s.mask, t.mask)
        if s.family == "random_like_stable":
            assert s.size == 6 and not s.mask[35:].any()
        if s.family == "random_like_unstable":
            assert s.size == 10 and not s.mask[35:].any()
    draws = [s.mask for s in a if s.family == "random_like_unstable"]
    assert len(draws) == 4 and not all(torch.equal(draws[0], m) for m in draws[1:])
    with pytest.raises(DataError, match="pool"):
        build_ablation_sets(stable, ~stable, pool=torch.zeros(40, dtype=torch.bool))


def test_ablation_table_collapses_random_controls_with_spread() -> None:
    stable = torch.zeros(10, dtype=torch.bool)
    stable[:2] = True
    sets = build_ablation_sets(stable, ~stable, n_random=3, generator=torch.Generator().manual_seed(0))
    results = {s.name: {"fvu": float(i)} for i, s in enumerate(sets)}
    rows = {r.name: r for r in ablation_table(sets, results)}
    ctl = rows["random_like_stable"]
    assert ctl.n_draws == 3 and ctl.size == 2
    assert ctl.metrics["fvu"] == pytest.approx(4.0)  # draws are sets 3, 4, 5
    assert ctl.spread["fvu"] == {"std": pytest.approx(1.0), "min": 3.0, "max": 5.0}
    assert rows["stable"].spread == {} and rows["stable"].metrics["fvu"] == 1.0
    assert z_score(6.0, ctl, "fvu") == pytest.approx(2.0)
