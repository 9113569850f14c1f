"""Data-dependent initialisation (issue 27): k-means, geometric median, the init switches, and the run's init sample
(read ahead without changing the batches, stored with its SHA-256, shared by every seed, reused on resume)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.optimize import minimize
from tests.training.test_trainer import Interrupting, pair, params, sparse_data, stream

from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import ConfigError
from saeseeds.hashing import file_sha256
from saeseeds.run_layout import INIT_SAMPLE
from saeseeds.sae import SparseAutoencoder, load_sae
from saeseeds.sae.kmeans import geometric_median, kmeans
from saeseeds.training import init_sample as init_sample_module
from saeseeds.training import read_manifest, train_run
from saeseeds.training.init_sample import InitInputs, peek_rows
from saeseeds.training.trainer import _Run

pytestmark = pytest.mark.usefixtures("one_thread")
D_IN, LATENTS = 12, 48


# ------------------------------------------------------------------ the math


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    return torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres]), centres


def test_kmeans_finds_separated_clusters_and_is_deterministic() -> None:
    points, centres = blobs()
    found = kmeans(points, 3, torch.Generator().manual_seed(4))
    order = found[:, 0].argsort(descending=True)  # (10, 0), (0, 10), (-10, -10)
    assert torch.allclose(found[order], centres, atol=0.1)
    again = kmeans(points, 3, torch.Generator().manual_seed(4))
    assert torch.equal(found, again)


def test_geometric_median_resists_outliers_and_minimises_the_summed_distance() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(40, 3, generator=g), torch.full((9, 3), 100.0)])
    median = geometric_median(points).double().numpy()
    assert np.linalg.norm(median) < 1.5 < np.linalg.norm(points.mean(0).numpy())
    x = points.double().numpy()
    best = minimize(lambda p: np.linalg.norm(x - p, axis=1).sum(), x.mean(0), method="Nelder-Mead",
                    options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20_000})
    assert np.linalg.norm(x - median, axis=1).sum() <= best.fun + 1e-6


# ------------------------------------------------------------------ the switches on the model


def model(seed: int = 0, sample: torch.Tensor | None = None, **cfg: object) -> SparseAutoencoder:
    return SparseAutoencoder(SaeConfig(num_latents=LATENTS, k=4, **cfg), D_IN,  # type: ignore[arg-type]
                             generator=torch.Generator().manual_seed(seed), sample=sample)


def test_default_initialisation_is_the_original_draw() -> None:
    """The defaults draw exactly what saeseeds drew before the switches existed: unit Gaussian rows from the seed's
    generator, the encoder their transpose."""
    w = torch.randn(LATENTS, D_IN, generator=torch.Generator().manual_seed(3))
    w /= w.norm(dim=1, keepdim=True)
    sae = model(3)
    assert torch.equal(sae.W_dec.detach(), w) and torch.equal(sae.encoder.weight.detach(), w)


def test_data_and_kmeans_decoders_come_from_the_sample_per_seed() -> None:
    sample = sparse_data(256, D_IN)
    unit = sample / sample.norm(dim=1, keepdim=True)
    data0, data1 = model(0, sample, init_decoder="data"), model(1, sample, init_decoder="data")
    for sae in (data0, data1):  # every row is a normalised sample row
        assert torch.allclose((sae.W_dec.detach() @ unit.T).max(-1).values, torch.ones(LATENTS), atol=1e-5)
    assert not torch.equal(data0.W_dec, data1.W_dec)
    km = model(0, sample, init_decoder="kmeans")
    centroids = kmeans(sample, LATENTS, torch.Generator().manual_seed(0))
    assert torch.allclose(km.W_dec.detach(), centroids / centroids.norm(dim=1, keepdim=True), atol=1e-5)
    random_encoder = model(0, sample, init_decoder="kmeans", init_encoder="random")
    assert torch.equal(random_encoder.W_dec, km.W_dec) and not torch.equal(random_encoder.encoder.weight, km.encoder.weight)
    assert torch.allclose(random_encoder.encoder.weight.norm(dim=1), torch.ones(LATENTS))
    with pytest.raises(ConfigError, match="init_sample_tokens >= 48"):
        model(0, sample[:20], init_decoder="data")


# ------------------------------------------------------------------ the run's init sample


def run_config(saes: list[SaeConfig], steps: int = 12, **train: object) -> RunConfig:
    tcfg = TrainConfig(seeds=[0, 1], batch_size=64, num_tokens=64 * steps, lr_warmup_steps=3, dead_tokens_threshold=128,
                       progress=False, eval_tokens=256, init_sample_tokens=256, **train)  # type: ignore[arg-type]
    return RunConfig(data=DataConfig(source="npy"), train=tcfg, saes=saes)


TOPK = SaeConfig(architecture="topk", num_latents=LATENTS, k=4)
KMEANS = SaeConfig(architecture="topk", num_latents=LATENTS, k=4, name="km", init_decoder="kmeans",
                   init_b_dec="geometric_median")
RASAE = SaeConfig(architecture="rasae", num_latents=LATENTS, k=4, rasae_candidates=96, rasae_delta=0.5)
MATRYOSHKA = SaeConfig(architecture="matryoshka", num_latents=LATENTS, k=4, matryoshka_prefixes=[6, 24])


def test_defaults_draw_no_sample_and_the_sample_changes_no_batch(tmp_path: Path) -> None:
    """A run of default SAEs writes no init sample; adding an SAE that needs one leaves the default SAEs' weights
    and the data fingerprint exactly as they were (the rows read ahead are replayed in order)."""
    x = sparse_data()
    plain = train_run(run_config([TOPK]), pair(x), tmp_path / "plain")
    assert not (tmp_path / "plain" / INIT_SAMPLE).exists() and "init_sample" not in read_manifest(tmp_path / "plain")
    mixed = train_run(run_config([TOPK, KMEANS]), pair(x), tmp_path / "mixed")
    assert mixed.fingerprint == plain.fingerprint
    a, b = params(tmp_path / "plain"), params(tmp_path / "mixed")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key}"


def test_the_sample_is_the_stream_start_stored_with_its_hash_and_shared_by_every_seed(tmp_path: Path) -> None:
    x = sparse_data()
    train_run(run_config([KMEANS, RASAE]), pair(x), tmp_path / "run")
    record = read_manifest(tmp_path / "run")["init_sample"]
    assert record["sha256"] == file_sha256(tmp_path / "run" / INIT_SAMPLE) and record["rows"] == 256
    stored = load_file(str(tmp_path / "run" / INIT_SAMPLE))["activations"]
    assert torch.equal(stored, x[:256])  # raw rows, the first of the stream
    rasae = [load_sae(tmp_path / "run" / "activations" / "rasae-48" / f"seed{s}") for s in (0, 1)]
    assert torch.equal(rasae[0].archetypes, rasae[1].archetypes)
    assert not torch.equal(rasae[0].W_dec, rasae[1].W_dec)


def test_geometric_median_b_dec_and_fitted_encoder_at_step_zero(tmp_path: Path) -> None:
    x = sparse_data()
    cfg = run_config([KMEANS, dataclasses.replace(TOPK, init_b_dec="zeros", name="zeros")])
    run = _Run(cfg, pair(x), tmp_path / "run", resume=False, overwrite=False)
    try:
        run.start()
        inputs = InitInputs({"activations": x[:256]}, run.scales)
        by_name = {m.name: m.sae for m in run.members if m.seed == 0}
        assert torch.allclose(by_name["km"].b_dec.detach(), inputs.median("activations"))
        assert float(by_name["zeros"].b_dec.detach().abs().max()) == 0.0
        scaled = x[:64] * run.scales["activations"]
        km = by_name["km"]
        with torch.no_grad():
            part = km.decode_dense(km.encode_dense(scaled)) - km.b_dec
            # fitted: no further scale of the encoder (and so of this reconstruction) fits the batch better
            best = float(((scaled - km.b_dec) * part).sum() / part.pow(2).sum())
        assert best == pytest.approx(1.0, rel=1e-4)
    finally:
        if run.lock is not None:
            run.lock.release()


def test_resume_reads_the_stored_sample_and_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = sparse_data()
    cfg = run_config([KMEANS, RASAE, MATRYOSHKA], checkpoint_every=4, batched_seeds=True)
    full = train_run(cfg, pair(x), tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, SourcePair(Interrupting(stream(x[:-256], 64), 7), [x[-256:]], {}), tmp_path / "cut")

    def no_peeking(*args: object) -> None:
        raise AssertionError("a resumed run must read its stored init sample")

    monkeypatch.setattr("saeseeds.training.trainer.peek_rows", no_peeking)
    resumed = train_run(cfg, pair(x), tmp_path / "cut", resume=True)
    assert resumed.fingerprint == full.fingerprint
    a, b = params(tmp_path / "full"), params(tmp_path / "cut")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key}"
    assert read_manifest(tmp_path / "cut")["init_sample"] == read_manifest(tmp_path / "full")["init_sample"]


def test_too_small_a_sample_is_one_line_naming_both_fields(tmp_path: Path) -> None:
    cfg = run_config([dataclasses.replace(RASAE, rasae_candidates=300)])
    with pytest.raises(ConfigError, match=r"saes\[0\]\.architecture = 'rasae' with 300 candidates .*"
                                          r"train\.init_sample_tokens >= 300"):
        train_run(cfg, pair(sparse_data()), tmp_path / "run")


def test_peeking_replays_every_batch_in_order() -> None:
    batches = [{"h": torch.full((4, 2), float(i))} for i in range(5)]
    stream_ = iter(batches[1:])
    sample, rest = peek_rows(batches[0], stream_, 10)
    assert sample["h"].shape == (10, 2) and sample["h"][:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert [int(b["h"][0, 0]) for b in rest] == [1, 2, 3, 4]
    short, _ = peek_rows(batches[0], iter(batches[1:2]), 100)  # a stream shorter than the sample
    assert short["h"].shape == (8, 2)
    assert init_sample_module.needs_init_sample([TOPK]) is False
    assert all(init_sample_module.needs_init_sample([c]) for c in (KMEANS, RASAE))


def test_a_run_killed_before_its_first_commit_starts_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The init sample is written after the step-0 commit: a kill before it leaves only what a fresh start clears."""
    cfg, x = run_config([RASAE]), sparse_data()

    def killed(self: _Run, *, final: bool = False) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(_Run, "save_state", killed)
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, pair(x), tmp_path / "run")
    assert not (tmp_path / "run" / INIT_SAMPLE).exists()
    train_run(cfg, pair(x), tmp_path / "run")
    assert (tmp_path / "run" / INIT_SAMPLE).is_file()
