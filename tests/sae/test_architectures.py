"""Each architecture's forward/backward, sparsity behaviour and encode/decode consistency."""

from __future__ import annotations

import pytest
import torch

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.sae import SparseAutoencoder
from saeseeds.training.member import Member

ARCHS = ["topk", "batchtopk", "relu", "jumprelu"]


def make(arch: str, d: int = 16, n: int = 64, k: int = 4, seed: int = 0, **kw) -> SparseAutoencoder:
    cfg = SaeConfig(architecture=arch, num_latents=n, k=k, **kw)
    return SparseAutoencoder(cfg, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_reaches_every_parameter(arch: str) -> None:
    # A wide kernel so that the threshold's straight-through gradient is non-zero on this small batch.
    sae = make(arch, jumprelu_bandwidth=1.0) if arch == "jumprelu" else make(arch)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    out = sae(x, dead_mask=torch.ones(64, dtype=torch.bool))
    (out.recon_loss + out.sparsity_loss + out.aux_loss).backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{arch}: no gradient reaches {name}"
    assert out.sae_out.shape == x.shape


@pytest.mark.parametrize("arch", ARCHS)
def test_sparse_and_dense_paths_agree(arch: str) -> None:
    sae = make(arch)
    sae.train()
    sae(torch.randn(64, 16))  # batchtopk: estimate a threshold
    sae.eval()
    x = torch.randn(20, 16)
    code = sae.encode(x)
    dense = sae.encode_dense(x)
    assert torch.allclose(sae.decode(code), sae.decode_dense(dense), atol=1e-5)
    rebuilt = torch.zeros_like(dense).scatter_add(-1, code.indices, code.values)
    assert torch.allclose(rebuilt, dense, atol=1e-6)


def test_topk_l0_is_exactly_k() -> None:
    sae = make("topk", k=5)
    out = sae(torch.randn(50, 16) * 3)
    assert out.l0.item() == pytest.approx(5.0)
    code = sae.encode(torch.randn(50, 16) * 3)
    assert code.values.shape == (50, 5) and (code.values > 0).all()


def test_batchtopk_keeps_k_per_token_on_average_in_training() -> None:
    sae = make("batchtopk", k=6)
    sae.train()
    out = sae(torch.randn(40, 16) * 3)
    assert out.l0.item() == pytest.approx(6.0)
    assert sae.threshold[0] > 0  # an inference threshold was estimated


def test_topk_sparse_gradients_equal_dense_autograd() -> None:
    """The sparse encoder/decoder backward must equal plain dense autograd."""
    sae = make("topk", k=4)
    x = torch.randn(24, 16, generator=torch.Generator().manual_seed(3))
    out = sae(x)
    out.recon_loss.backward()
    sparse_grads = {n: p.grad.clone() for n, p in sae.named_parameters()}

    ref = make("topk", k=4)
    xc = x - ref.b_dec
    pre = xc @ ref.encoder.weight.T + ref.encoder.bias
    idx = pre.relu().topk(4, dim=-1).indices
    mask = torch.zeros_like(pre).scatter(-1, idx, 1.0)
    acts = pre.relu() * mask
    recon = acts @ ref.W_dec + ref.b_dec
    fvu = (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    fvu.backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(sparse_grads[n], p.grad, atol=1e-5), n


def train_steps(arch: str, steps: int, **kw) -> float:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(48, 16, generator=g), dim=1)
    member = Member.create(
        "h", SaeConfig(architecture=arch, num_latents=64, **kw), 0, 16,
        TrainConfig(lr=1e-2, lr_warmup_steps=0), steps, torch.device("cpu"),
    )
    l0 = 0.0
    for step in range(steps):
        codes = (torch.rand(128, 48, generator=g) < 0.05) * torch.rand(128, 48, generator=g) * 4
        l0 = member.step(codes @ dictionary, step).l0
    return l0


def test_relu_l1_penalty_lowers_l0() -> None:
    weak = train_steps("relu", 100, l1_coefficient=0.001, l1_warmup_steps=1)
    strong = train_steps("relu", 100, l1_coefficient=5.0, l1_warmup_steps=1)
    assert strong < 0.6 * weak


def test_jumprelu_l0_penalty_lowers_l0() -> None:
    weak = train_steps("jumprelu", 100, l0_coefficient=0.0001, l0_warmup_steps=1)
    strong = train_steps("jumprelu", 100, l0_coefficient=2.0, l0_warmup_steps=1)
    assert strong < 0.8 * weak


def test_decoder_rows_stay_unit_norm_during_training() -> None:
    member = Member.create(
        "h", SaeConfig(architecture="topk", num_latents=32, k=4), 0, 8,
        TrainConfig(lr=1e-2, lr_warmup_steps=0), 20, torch.device("cpu"),
    )
    for step in range(20):
        member.step(torch.randn(64, 8), step)
    norms = member.sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_initialisation_depends_only_on_the_generator() -> None:
    a, b, c = make("topk", seed=1), make("topk", seed=1), make("topk", seed=2)
    assert torch.equal(a.W_dec, b.W_dec) and torch.equal(a.encoder.weight, a.W_dec)  # topk: W_enc = W_decᵀ
    assert not torch.equal(a.W_dec, c.W_dec)


def test_wrong_width_is_a_clear_error() -> None:
    from saeseeds.errors import DataError

    with pytest.raises(DataError, match=r"expects \[batch, 16\]"):
        make("topk").encode(torch.randn(4, 15))
