"""The architecture registry: a toy architecture defined here trains in lockstep, saves and loads like the built-ins."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from saeseeds.config import DataConfig, RunConfig, SaeConfig, TrainConfig
from saeseeds.config.checks import check_float, check_int
from saeseeds.data.sources import build_source
from saeseeds.errors import CheckpointError, ConfigError
from saeseeds.sae import SparseAutoencoder, load_sae, save_sae
from saeseeds.sae.checkpoint import read_checkpoint_cfg
from saeseeds.sae.outputs import Encoding
from saeseeds.sae.registry import (
    architecture_names,
    get_architecture,
    register_architecture,
    unregister_architecture,
)
from saeseeds.sae.spec import ArchitectureSpec, SparsityPenalty, pre_activations, require
from saeseeds.sae.topk import TopK
from saeseeds.training import list_checkpoints, train_run
from saeseeds.training.member import Member

TOY = "capped-relu"
CAP_INIT = 0.5
CAP_MIN = 0.05


class CappedRelu(ArchitectureSpec):
    """ReLU capped at a learned per-latent ceiling (a ReLU6 whose 6 is trained), with relu's L1 penalty."""

    fields = ("l1_coefficient", "l1_warmup_steps")

    def validate(self, cfg: SaeConfig, where: str, d_in: int | None) -> None:
        """A stricter L1 range than relu's, so the test can tell whose checks ran."""
        check_float(f"{where}.l1_coefficient", cfg.l1_coefficient, 0.0, 10.0)
        check_int(f"{where}.l1_warmup_steps", cfg.l1_warmup_steps, 0)

    def init_extra(self, sae: SparseAutoencoder, device: torch.device | str | None, dtype: torch.dtype) -> None:
        """One extra parameter: the caps."""
        sae.cap = nn.Parameter(torch.full((sae.num_latents,), CAP_INIT, device=device, dtype=dtype))

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        """min(relu(pre), cap), dense, with the decoder-norm-weighted L1 penalty."""
        pre = pre_activations(sae, x_centered)
        dense = torch.minimum(pre.relu(), sae.cap)
        penalty = (dense * sae.W_dec.norm(dim=1)).sum(-1).mean()
        return Encoding(None, None, dense, pre, penalty)

    def sparsity_penalty(self, cfg: SaeConfig) -> SparsityPenalty:
        """relu's L1 coefficient and warm-up."""
        return SparsityPenalty(cfg.l1_coefficient, cfg.l1_warmup_steps)

    def post_step(self, sae: SparseAutoencoder) -> None:
        """Caps stay above CAP_MIN."""
        sae.cap.clamp_(min=CAP_MIN)

    def checkpoint_tensors(self, sae: SparseAutoencoder) -> dict[str, Tensor]:
        """The caps, under the name 'cap'."""
        return {"cap": sae.cap}

    def load_checkpoint_tensors(self, sae: SparseAutoencoder, tensors: Mapping[str, Tensor], source: str) -> None:
        """A checkpoint without caps is an error."""
        sae.cap.copy_(require(tensors, "cap", sae.num_latents, source, TOY))


@pytest.fixture
def toy() -> Iterator[CappedRelu]:
    """Register the toy architecture for one test."""
    spec = register_architecture(TOY, CappedRelu())
    yield spec
    unregister_architecture(TOY)


def toy_reference(tensors: dict[str, Tensor], x: Tensor) -> Tensor:
    """The toy's encoder written out from raw checkpoint tensors."""
    pre = (x - tensors["b_dec"]) @ tensors["encoder.weight"].T + tensors["encoder.bias"]
    return torch.minimum(pre.relu(), tensors["cap"])


def npy_run(tmp_path: Path, saes: list[SaeConfig], seeds: list[int]) -> RunConfig:
    """A run on a small npy file of sparse activations (d_in = 8)."""
    g = np.random.default_rng(0)
    dictionary = g.standard_normal((20, 8)).astype(np.float32)
    codes = (g.random((1200, 20)) < 0.1) * g.random((1200, 20)) * 3
    np.save(tmp_path / "acts.npy", (codes @ dictionary).astype(np.float32))
    train = TrainConfig(seeds=seeds, batch_size=100, num_tokens=1000, lr=3e-3, lr_warmup_steps=2,
                        dead_tokens_threshold=200, eval_tokens=100, progress=False)
    return RunConfig(data=DataConfig(source="npy", path=str(tmp_path / "acts.npy"), eval_fraction=0.1),
                     train=train, saes=saes)


def test_builtins_are_registered_and_unknown_names_list_them() -> None:
    assert architecture_names()[:4] == ("topk", "batchtopk", "relu", "jumprelu")
    with pytest.raises(ConfigError, match=r"'gated' is not registered; allowed: one of topk, batchtopk, relu, jumprelu"):
        get_architecture("gated")
    with pytest.raises(ConfigError, match=r"already registered"):
        register_architecture("topk", CappedRelu())


def test_registered_toy_is_a_valid_architecture_name(toy: CappedRelu) -> None:
    assert TOY in architecture_names() and get_architecture(TOY) is toy
    SaeConfig(architecture=TOY).validate()
    with pytest.raises(ConfigError, match=r"saes\[0\]\.architecture = 'gated' is not registered.*capped-relu"):
        RunConfig(data=DataConfig(source="synthetic"), saes=[SaeConfig(architecture="gated")]).validate()


def test_the_spec_validates_the_fields_it_uses(toy: CappedRelu) -> None:
    relu = SaeConfig(architecture="relu", l1_coefficient=50.0)
    relu.validate()  # relu allows any L1 weight >= 0
    with pytest.raises(ConfigError, match=r"saes\[1\]\.l1_coefficient = 50\.0 is out of range; allowed: .*\[0, 10\]"):
        cfg = RunConfig(data=DataConfig(source="synthetic"), saes=[relu, SaeConfig(architecture=TOY, l1_coefficient=50.0)])
        cfg.validate()
    SaeConfig(architecture=TOY, k=-3).validate()  # k is not one of the toy's fields


def test_member_uses_the_toys_penalty_and_post_step_hook(toy: CappedRelu) -> None:
    member = Member.create("h", SaeConfig(architecture=TOY, num_latents=16, l1_coefficient=2.0, l1_warmup_steps=4),
                           0, 8, TrainConfig(lr=1e-6, lr_warmup_steps=0), 10, torch.device("cpu"))
    assert member._coefficient_warmup(0) == pytest.approx(0.5) and member._coefficient_warmup(9) == 2.0
    with torch.no_grad():
        member.sae.cap.fill_(-1.0)  # far below CAP_MIN; one tiny Adam step cannot bring it back
    member.step(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), 0)
    assert torch.equal(member.sae.cap.detach(), torch.full((16,), CAP_MIN))  # the post-step hook clamped them


def test_toy_trains_in_lockstep_saves_and_loads(toy: CappedRelu, tmp_path: Path) -> None:
    cfg = npy_run(tmp_path, [SaeConfig(architecture=TOY, num_latents=32, l1_coefficient=0.1),
                             SaeConfig(architecture="topk", num_latents=32, k=4)], seeds=[0, 1])
    cfg.validate()
    result = train_run(cfg, build_source(cfg), tmp_path / "run")
    assert result.steps == 10
    refs = [r for r in list_checkpoints(tmp_path / "run") if r.sae_name == f"{TOY}-32"]
    assert [r.seed for r in refs] == [0, 1]
    x = torch.from_numpy(np.load(tmp_path / "acts.npy")[:50])
    caps = []
    for ref in refs:
        cfg_json = read_checkpoint_cfg(ref.path)
        assert cfg_json["architecture"] == TOY and cfg_json["activation"] == TOY
        tensors = load_file(str(ref.path / "sae.safetensors"))
        assert set(tensors) == {"encoder.weight", "encoder.bias", "W_dec", "b_dec", "cap"}
        loaded = load_sae(ref.path).eval()
        assert loaded.architecture == TOY and isinstance(loaded.spec, CappedRelu)
        assert torch.equal(loaded.cap.detach(), tensors["cap"])
        assert torch.allclose(loaded.encode_dense(x), toy_reference(tensors, x), atol=1e-5)
        save_sae(loaded, tmp_path / "again")
        again = load_sae(tmp_path / "again").eval()
        assert torch.equal(again.encode_dense(x), loaded.encode_dense(x))
        caps.append(tensors["cap"])
    assert not torch.equal(caps[0], caps[1])  # the seeds trained different caps
    assert any((c != CAP_INIT).any() for c in caps)  # and the caps were trained at all


def test_toy_checkpoint_without_its_tensor_is_refused(toy: CappedRelu, tmp_path: Path) -> None:
    sae = SparseAutoencoder(SaeConfig(architecture=TOY, num_latents=16), 8, generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "ck")
    tensors = load_file(str(tmp_path / "ck" / "sae.safetensors"))
    del tensors["cap"]
    save_file(tensors, str(tmp_path / "ck" / "sae.safetensors"))
    with pytest.raises(CheckpointError, match="a capped-relu SAE needs a cap tensor"):
        load_sae(tmp_path / "ck")


def test_unregistered_architecture_cannot_be_loaded(tmp_path: Path) -> None:
    spec = register_architecture(TOY, CappedRelu())
    try:
        sae = SparseAutoencoder(SaeConfig(architecture=TOY, num_latents=16), 8, generator=torch.Generator().manual_seed(0))
        save_sae(sae, tmp_path / "ck")
    finally:
        unregister_architecture(TOY)
    assert TOY not in architecture_names() and spec is not None
    with pytest.raises(CheckpointError, match=r"unsupported architecture 'capped-relu' \(supported: topk, batchtopk"):
        load_sae(tmp_path / "ck")


CONFIG_ALONE = """
import sys
from saeseeds.config import SaeConfig
from saeseeds.errors import ConfigError
assert "saeseeds.sae" not in sys.modules  # config loads without the model layer
try:
    SaeConfig(architecture="relu", l1_coefficient=-1.0).validate()
except ConfigError as err:
    print(err)
"""


def _model_references(source: str) -> list[str]:
    """Imports of saeseeds.sae in `source`, and module names of it in code (handed to importlib), docs aside."""
    tree = ast.parse(source)
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    found = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    found += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    found += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and id(n) not in docs]
    return [name for name in found if name == "saeseeds.sae" or name.startswith("saeseeds.sae.")]


def test_config_asks_the_specs_through_its_seam_and_never_imports_the_model() -> None:
    src = Path(__file__).parents[2] / "src" / "saeseeds" / "config"
    for module in src.glob("*.py"):
        assert _model_references(module.read_text()) == [], module.name
    out = subprocess.run([sys.executable, "-c", CONFIG_ALONE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("sae.l1_coefficient = -1.0 is out of range")  # relu's own check ran


class CappedTopK(TopK):
    """TopK's code, capped: no longer positively homogeneous, and sparsify no longer computes it exactly."""

    def encode(self, sae: SparseAutoencoder, x_centered: Tensor) -> Encoding:
        enc = super().encode(sae, x_centered)
        return enc._replace(values=enc.values.clamp(max=1.0))


class ExactTopK(TopK):
    """TopK under another name, restating that sparsify computes it exactly."""

    sparsify_k = True


def test_each_spec_owns_its_checkpoint_facts(tmp_path: Path) -> None:
    facts = {name: (get_architecture(name).latent_unit_tensors, get_architecture(name).sparsify_k)
             for name in ("topk", "batchtopk", "relu", "jumprelu")}
    assert facts == {"topk": ((), True), "batchtopk": (("threshold",), False), "relu": ((), False),
                     "jumprelu": (("threshold",), False)}
    assert (CappedTopK.latent_unit_tensors, CappedTopK.sparsify_k) == (None, False)  # not inherited from TopK
    for name, spec in (("capped-topk", CappedTopK()), ("exact-topk", ExactTopK())):
        register_architecture(name, spec)
        try:
            sae = SparseAutoencoder(SaeConfig(architecture=name, num_latents=16, k=4), 8,
                                    generator=torch.Generator().manual_seed(0))
            save_sae(sae, tmp_path / name, input_scale=2.0)
        finally:
            unregister_architecture(name)
        assert ("k" in json.loads((tmp_path / name / "cfg.json").read_text())) == spec.sparsify_k
        folded_into = read_checkpoint_cfg(tmp_path / name)["input_scale_folded_into"]
        assert folded_into == "encoder.weight, W_dec, b_dec"  # not homogeneous
