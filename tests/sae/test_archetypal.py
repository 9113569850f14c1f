"""RA-SAE (issue 27): every atom within δ of the convex hull of the stored centroids after every step and after
save/load (checked by solving the distance-to-hull problem), δ = 0 and δ = ∞, and checkpoints a plain TopK reader
reconstructs identically."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from scipy.optimize import minimize, nnls

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.errors import CheckpointError
from saeseeds.sae import SparseAutoencoder, load_sae, save_sae
from saeseeds.sae.archetypal import project_simplex
from saeseeds.sae.checkpoint import build_sae
from saeseeds.sae.kmeans import kmeans
from saeseeds.training.member import Member

pytestmark = pytest.mark.usefixtures("one_thread")
D_IN, LATENTS, K, CANDIDATES = 10, 32, 3, 24
HULL_TOL = 1e-4


def data(rows: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, D_IN, generator=g) + 1.0


def centroids() -> torch.Tensor:
    return kmeans(data(512, seed=9), CANDIDATES, torch.Generator().manual_seed(0))


def member(delta: float, seed: int = 0, normalize: bool = False, lr: float = 0.05) -> Member:
    cfg = SaeConfig(architecture="rasae", num_latents=LATENTS, k=K, rasae_delta=delta, rasae_candidates=CANDIDATES,
                    normalize_decoder=normalize)
    train = TrainConfig(batch_size=256, num_tokens=256 * 8, lr=lr, lr_warmup_steps=0)
    return Member.create("h", cfg, seed, D_IN, train, 8, torch.device("cpu"), points=centroids())


def hull_distance(atom: torch.Tensor, points: torch.Tensor) -> float:
    """min over the simplex of |points^T w − atom|: NNLS with the row Σ w = 1 weighted heavily, then w rescaled to
    sum 1 (a feasible point, so an upper bound on the distance, tight to the weighting)."""
    c = points.double().numpy().T
    big = 1e4 * max(1.0, float(np.abs(c).max()))
    w, _ = nnls(np.vstack([c, big * np.ones((1, c.shape[1]))]), np.concatenate([atom.double().numpy(), [big]]),
                maxiter=5000)
    w = w / w.sum()
    return float(np.linalg.norm(c @ w - atom.double().numpy()))


def max_hull_distance(atoms: torch.Tensor, points: torch.Tensor) -> float:
    return max(hull_distance(a, points) for a in atoms.detach())


def test_simplex_projection_is_the_euclidean_one() -> None:
    rows = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    projected = project_simplex(rows)
    assert (projected >= 0).all() and torch.allclose(projected.sum(-1), torch.ones(4, dtype=torch.float64))
    for v, p in zip(rows.numpy(), projected.numpy(), strict=True):
        best = minimize(lambda w, v=v: ((w - v) ** 2).sum(), np.full(6, 1 / 6), method="SLSQP", bounds=[(0, None)] * 6,
                        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], options={"ftol": 1e-12})
        assert np.allclose(p, best.x, atol=1e-5)
    inside = torch.tensor([[0.2, 0.3, 0.5]])
    assert torch.equal(project_simplex(inside), inside)


def test_every_atom_stays_within_delta_of_the_hull_after_every_step_and_after_save_load(tmp_path: Path) -> None:
    delta = 0.3
    m = member(delta, lr=0.1)  # a large rate: unprojected, the atoms would leave the hull quickly
    points = m.sae.archetypes.clone()
    for t in range(8):
        m.step(data(seed=t), t)
        assert max_hull_distance(m.sae.W_dec, points) <= delta + HULL_TOL
    assert float(m.sae.relaxation.detach().norm(dim=-1).max()) > delta / 2  # the relaxation is used, not idle
    save_sae(m.sae, tmp_path / "ck", input_scale=1.5)
    loaded = load_sae(tmp_path / "ck")
    assert torch.equal(loaded.archetypes, points)  # the centroids are stored, unscaled (the fold leaves them)
    assert max_hull_distance(loaded.W_dec, loaded.archetypes) <= delta + HULL_TOL
    for name in ("mixing", "relaxation"):
        assert torch.equal(getattr(loaded, name), getattr(m.sae, name))


def test_the_projection_is_what_keeps_atoms_near_the_hull() -> None:
    """Planted: push the factors off (negative mixing, long relaxation); the distance exceeds δ until post_step."""
    delta = 0.2
    m = member(delta)
    sae = m.sae
    with torch.no_grad():
        sae.mixing.add_(torch.randn(sae.mixing.shape, generator=torch.Generator().manual_seed(3)))
        sae.relaxation.copy_(torch.randn(sae.relaxation.shape, generator=torch.Generator().manual_seed(4)) * 3)
        off = sae.mixing @ sae.archetypes + sae.relaxation
        assert max_hull_distance(off, sae.archetypes) > 1.0
        sae.spec.post_step(sae)
    assert max_hull_distance(sae.W_dec, sae.archetypes) <= delta + HULL_TOL
    assert torch.allclose(sae.mixing.sum(-1), torch.ones(LATENTS)) and (sae.mixing >= 0).all()


def test_delta_zero_is_the_pure_archetypal_dictionary() -> None:
    m = member(0.0, lr=0.1)
    for t in range(6):
        m.step(data(seed=t), t)
        assert float(m.sae.relaxation.detach().abs().max()) == 0.0
        assert max_hull_distance(m.sae.W_dec, m.sae.archetypes) <= HULL_TOL
    assert torch.allclose(m.sae.W_dec, m.sae.mixing @ m.sae.archetypes)


def test_delta_infinite_is_an_unconstrained_topk_decoder() -> None:
    """Any dictionary is reachable (Λ = target − A·C survives the projection) and the SAE then computes exactly as
    a TopK SAE with the same weights."""
    m = member(math.inf)
    sae = m.sae
    target = torch.randn(LATENTS, D_IN, generator=torch.Generator().manual_seed(5)) * 50  # far outside the hull
    with torch.no_grad():
        sae.relaxation.copy_(target - sae.mixing @ sae.archetypes)
        sae.spec.post_step(sae)
    assert torch.allclose(sae.W_dec, target, atol=1e-4)
    assert max_hull_distance(sae.W_dec, sae.archetypes) > 10
    topk = build_sae("topk", encoder_weight=sae.encoder.weight.detach(), encoder_bias=sae.encoder.bias.detach(),
                     W_dec=sae.W_dec.detach(), b_dec=sae.b_dec.detach(), k=K, normalize_decoder=False)
    x = data()
    ours, theirs = sae(x), topk(x)
    assert torch.equal(ours.sae_out, theirs.sae_out)
    # a finite δ would have pulled the same factors back to the hull
    bounded = member(1.0)
    with torch.no_grad():
        bounded.sae.relaxation.copy_(target - bounded.sae.mixing @ bounded.sae.archetypes)
        bounded.sae.spec.post_step(bounded.sae)
    assert max_hull_distance(bounded.sae.W_dec, bounded.sae.archetypes) <= 1.0 + HULL_TOL


def test_unit_norm_decoder_rows_are_the_directions_of_constrained_atoms() -> None:
    delta = 0.25
    m = member(delta, normalize=True)
    for t in range(4):
        m.step(data(seed=t), t)
    atoms = m.sae.mixing @ m.sae.archetypes + m.sae.relaxation
    assert max_hull_distance(atoms, m.sae.archetypes) <= delta + HULL_TOL
    assert torch.allclose(m.sae.W_dec, atoms / atoms.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(m.sae.W_dec.norm(dim=-1), torch.ones(LATENTS), atol=1e-5)


def test_seeds_share_the_candidates_and_start_on_different_atoms() -> None:
    a, b = member(1.0, seed=0).sae, member(1.0, seed=1).sae
    assert torch.equal(a.archetypes, b.archetypes)
    assert not torch.equal(a.W_dec, b.W_dec)
    for sae in (a, b):  # the first CANDIDATES atoms start each on its own candidate, the rest at mixtures of them
        picked = sae.mixing[:CANDIDATES].detach()
        assert torch.equal(picked.max(-1).values, torch.ones(CANDIDATES)) and len(set(picked.argmax(-1).tolist())) == CANDIDATES
        assert float(sae.mixing[CANDIDATES:].detach().max()) < 1
    assert not a.b_dec.requires_grad and float(a.b_dec.abs().max()) == 0.0  # x̂ = z·D: no decoder bias


def test_checkpoint_reads_as_a_plain_topk_sae(tmp_path: Path) -> None:
    m = member(0.5)
    m.step(data(), 0)
    save_sae(m.sae, tmp_path / "ck")
    assert set(load_file(str(tmp_path / "ck" / "sae.safetensors"))) == {"encoder.weight", "encoder.bias", "W_dec",
                                                                        "b_dec"}
    assert set(load_file(str(tmp_path / "ck" / "saeseeds.safetensors"))) == {"archetypes", "mixing", "relaxation"}
    assert json.loads((tmp_path / "ck" / "cfg.json").read_text())["activation"] == "topk"
    x = data(seed=7)
    sparsify = pytest.importorskip("sparsify")
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "ck")
    ours = load_sae(tmp_path / "ck")
    assert ours.architecture == "rasae"
    assert torch.allclose(theirs(x).sae_out, ours.decode(ours.encode(x)), atol=1e-6)


def test_factors_that_disagree_with_the_stored_dictionary_are_refused(tmp_path: Path) -> None:
    m = member(0.5)
    save_sae(m.sae, tmp_path / "ck")
    tensors = load_file(str(tmp_path / "ck" / "saeseeds.safetensors"))
    tensors["relaxation"] = tensors["relaxation"] + 1.0
    save_file(tensors, str(tmp_path / "ck" / "saeseeds.safetensors"))
    with pytest.raises(CheckpointError, match="W_dec differs from mixing @ archetypes"):
        load_sae(tmp_path / "ck")


def test_an_sae_built_alone_gets_random_shared_candidates() -> None:
    cfg = SaeConfig(architecture="rasae", num_latents=8, k=2, rasae_candidates=4)
    a = SparseAutoencoder(cfg, D_IN, generator=torch.Generator().manual_seed(0))
    b = SparseAutoencoder(cfg, D_IN, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.archetypes, b.archetypes) and a.archetypes.shape == (4, D_IN)
    assert torch.allclose(a.mixing.sum(-1), torch.ones(8)) and (a.mixing >= 0).all()  # 8 atoms, 4 candidates


def test_export_writes_it_as_saelens_topk(tmp_path: Path) -> None:
    from saeseeds.api.exporting import export

    m = member(0.5, normalize=True)
    m.step(data(), 0)
    save_sae(m.sae, tmp_path / "ck")
    manifest = json.loads(export(tmp_path / "ck", tmp_path / "out").read_text())
    assert [(e["architecture"], e["saelens_architecture"]) for e in manifest["saes"]] == [("rasae", "topk")]
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["k"] == K
