"""Hub names through a planted Hugging Face cache (no network), SAELens release names, sparsify's `--init_seeds`
layout, and names of loose checkpoints (`--names`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from saeseeds.api.discovery import seed_sets
from saeseeds.cli import main
from saeseeds.config import SaeConfig
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.sae import SparseAutoencoder, hub, load_any, save_sae

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sae(seed: int, d: int = 16, n: int = 32) -> SparseAutoencoder:
    return SparseAutoencoder(SaeConfig(num_latents=n, k=4), d, generator=torch.Generator().manual_seed(seed))


def plant(cache: Path, repo_id: str, folder: str, model: SparseAutoencoder) -> Path:
    """A repo snapshot in huggingface_hub's cache layout (refs/main → snapshots/<commit>/<folder>/)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    where = repo / "snapshots" / COMMIT / folder
    save_sae(model, where)
    return where


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # relative hub names must not collide with a real folder
    return root


def test_hub_names_resolve_from_the_local_cache(cache: Path) -> None:
    model = sae(1)
    where = plant(cache, "EleutherAI/sae-pythia-70m-32k", "layers.3", model)
    for name in ("EleutherAI/sae-pythia-70m-32k/layers.3", "hf://EleutherAI/sae-pythia-70m-32k/layers.3"):
        assert hub.resolve_checkpoint(name) == where
        loaded = load_any(name)
        assert torch.equal(loaded.W_dec, model.W_dec)
    assert load_any(Path("hf://EleutherAI/sae-pythia-70m-32k/layers.3")).num_latents == 32  # Path() ate a slash


def test_a_hub_name_missing_from_the_cache_is_one_clear_line(cache: Path) -> None:
    plant(cache, "EleutherAI/sae-pythia-70m-32k", "layers.3", sae(1))
    with pytest.raises(CheckpointError, match=r"layers\.4 does not exist as a local path.*offline") as err:
        load_any("EleutherAI/sae-pythia-70m-32k/layers.4")
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_any(cache / "absolute" / "missing")  # an absolute path is never a hub name


def test_compare_accepts_hub_names_and_names_them_by_repo(cache: Path, tmp_path: Path, capsys) -> None:
    plant(cache, "org/sae-a", "layers.3", sae(1))
    plant(cache, "org/sae-b", "layers.3", sae(2))
    sets = seed_sets(["org/sae-a/layers.3", "org/sae-b/layers.3"])
    assert sets[0].names == ("sae-a/layers.3", "sae-b/layers.3")
    code = main(["compare", "org/sae-a/layers.3", "hf://org/sae-b/layers.3", "--out", str(tmp_path / "cmp"),
                 "--names", "a,b", "--quiet"])
    assert code == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert {(p["a"], p["b"]) for p in summary["pairs"]} >= {("a", "b")}


def test_a_hub_folder_of_seeds_is_one_seed_set(cache: Path) -> None:
    for seed in (0, 1):
        plant(cache, "org/multi-seed", f"layers.3/seed{seed}", sae(seed))
    sets = seed_sets(["org/multi-seed/layers.3"])
    assert [(s.label, s.names) for s in sets] == [("layers.3", ("seed0", "seed1"))]


def fake_saelens(monkeypatch: pytest.MonkeyPatch, conversion: str | None = None) -> None:
    lookup = SimpleNamespace(repo_id="org/sae-a", saes_map={"blocks.3.hook_resid_post": "layers.3"},
                             conversion_func=conversion, norm_scaling_factor={})
    monkeypatch.setattr(hub, "saelens_directory", lambda: {"my-release": lookup})


def test_saelens_release_and_sae_id_resolve_through_its_registry(cache: Path, monkeypatch) -> None:
    where = plant(cache, "org/sae-a", "layers.3", sae(1))
    fake_saelens(monkeypatch)
    assert hub.resolve_checkpoint("my-release/blocks.3.hook_resid_post") == where
    assert hub.resolve_checkpoint("saelens://my-release/blocks.3.hook_resid_post") == where
    with pytest.raises(CheckpointError, match="has no SAE 'blocks.9'"):
        hub.resolve_checkpoint("saelens://my-release/blocks.9")
    fake_saelens(monkeypatch, conversion="gemma_2")
    with pytest.raises(CheckpointError, match="converter 'gemma_2'"):
        hub.resolve_checkpoint("my-release/blocks.3.hook_resid_post")
    monkeypatch.setattr(hub, "saelens_directory", lambda: None)
    with pytest.raises(CheckpointError, match="sae-lens is not installed"):
        hub.resolve_checkpoint("saelens://my-release/blocks.3.hook_resid_post")


def test_a_real_saelens_release_name_resolves_through_sae_lens_own_registry(cache: Path) -> None:
    """sae-lens's real registry (no fake): gpt2-small-res-jb is stored in SAELens's own format under
    jbloom/GPT2-Small-SAEs-Reformatted; the planted folder is what a download would have put in the cache."""
    pytest.importorskip("sae_lens", reason="sae-lens is not installed (it is in the test extra)")
    lookup = hub.saelens_directory()["gpt2-small-res-jb"]
    folder = lookup.saes_map["blocks.0.hook_resid_pre"]
    model = sae(3)
    where = plant(cache, lookup.repo_id, folder, model)
    assert hub.resolve_checkpoint("gpt2-small-res-jb/blocks.0.hook_resid_pre") == where
    loaded = load_any("saelens://gpt2-small-res-jb/blocks.0.hook_resid_pre")
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.encode_dense(x), model.encode_dense(x), rtol=0, atol=1e-5)


def test_sparsify_init_seeds_layout_is_discovered(tmp_path: Path) -> None:
    sparsify = pytest.importorskip("sparsify")
    run = tmp_path / "sparsify-run"
    for hook in ("layers.0", "layers.1"):
        for seed in (0, 1):
            torch.manual_seed(seed)
            sparsify.SparseCoder(16, sparsify.SparseCoderConfig(num_latents=32, k=4)).save_to_disk(
                run / hook / f"seed{seed}")
    (run / "config.json").write_text("{}")  # sparsify's run-level config
    (run / ".state").mkdir()
    (run / ".state" / "cfg.json").write_text("{}")  # hidden folders are never walked
    sets = seed_sets(run)
    assert [(s.label, s.names, s.seeds) for s in sets] == [
        ("layers.0", ("seed0", "seed1"), (0, 1)),
        ("layers.1", ("seed0", "seed1"), (0, 1)),
    ]
    one = seed_sets(run / "layers.1")
    assert len(one) == 1 and one[0].hookpoint == "layers.1" and len(one[0]) == 2


def test_a_folder_of_different_hookpoints_is_not_a_seed_set(tmp_path: Path) -> None:
    save_sae(sae(0), tmp_path / "run" / "layers.0")
    save_sae(sae(1), tmp_path / "run" / "layers.1")
    with pytest.raises(CheckpointError, match=r"\(layers\.0, layers\.1\) but no seed<N> folders"):
        seed_sets(tmp_path / "run")


def test_loose_checkpoints_get_distinct_names_or_the_given_ones(tmp_path: Path) -> None:
    for lib in ("sparsify", "saelens", "dictlearn"):
        save_sae(sae(len(lib)), tmp_path / lib / "seed0")
    paths = [tmp_path / lib / "seed0" for lib in ("sparsify", "saelens", "dictlearn")]
    assert seed_sets(paths)[0].names == ("sparsify/seed0", "saelens/seed0", "dictlearn/seed0")
    assert seed_sets(paths + [paths[0]])[0].names[-1] == "sparsify/seed0-2"  # the same folder twice
    assert seed_sets(paths, names=["a", "b", "c"])[0].names == ("a", "b", "c")
    with pytest.raises(ConfigError, match="2 name"):
        seed_sets(paths, names=["a", "b"])
    with pytest.raises(ConfigError, match="distinct"):
        seed_sets(paths, names=["a", "a", "c"])


def test_a_mistyped_local_path_is_an_immediate_line_not_a_hub_lookup(cache: Path, monkeypatch) -> None:
    (Path("runs") / "x" / "seed0").mkdir(parents=True)

    def no_hub(*_args, **_kwargs):
        raise AssertionError("a name whose first folder exists here was looked up on the hub")

    monkeypatch.setattr(hub, "resolve_hub_name", no_hub)
    with pytest.raises(CheckpointError, match=r"runs/x/seed9 does not exist; closest entries in runs/x: seed0"):
        hub.resolve_checkpoint("runs/x/seed9")
