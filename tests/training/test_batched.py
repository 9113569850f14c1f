"""The batched multi-seed path (train.batched_seeds) against the per-member reference, on the CPU.

Tolerance (docs/performance.md): relu, jumprelu and batchtopk without AuxK are bit-identical; topk and AuxK
sum the sparse decoder's gradient in another order, so parameters agree to 1e-5 after a dozen steps.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from saeseeds.config import SaeConfig, TrainConfig
from saeseeds.data.types import SourcePair
from saeseeds.errors import ConfigError
from saeseeds.sae import load_sae
from saeseeds.training import list_checkpoints, read_manifest, train_run
from saeseeds.training.batched import (
    SeedStack,
    SingleMember,
    group_states,
    make_groups,
    read_pending,
)
from saeseeds.training.member import Member

D, N, B, STEPS = 16, 64, 32, 12
CPU = torch.device("cpu")
TOLERANCE = 1e-5
"""Largest parameter difference allowed where the summation order differs (topk, AuxK)."""


def members(arch: str, seeds=(0, 1, 2), train: dict | None = None, **sae: Any) -> list[Member]:
    sae_cfg = SaeConfig(architecture=arch, num_latents=N, k=4, l1_coefficient=0.3, l0_coefficient=0.05, **sae)
    train_cfg = TrainConfig(lr=3e-3, lr_warmup_steps=3, dead_tokens_threshold=64, batch_size=B, **(train or {}))
    return [Member.create("h", sae_cfg, s, D, train_cfg, STEPS, CPU) for s in seeds]


def batches(count: int = STEPS) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    dictionary = torch.nn.functional.normalize(torch.randn(40, D, generator=g), dim=1)
    return [((torch.rand(B, 40, generator=g) < 0.1) * torch.rand(B, 40, generator=g) * 3) @ dictionary + 0.2
            for _ in range(count)]


def assert_close_tree(a: Any, b: Any, exact: bool, where: str = "") -> None:
    """Nested dicts/lists of tensors and numbers equal (bit for bit when `exact`)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_close_tree(a[k], b[k], exact, f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close_tree(x, y, exact, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        if exact:
            assert torch.equal(a, b), f"{where}: max diff {(a.double() - b.double()).abs().max()}"
        else:
            torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE, msg=where)
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == pytest.approx(b, rel=1e-6) if isinstance(a, float) else a == b, where


def run_both(arch: str, **sae: Any):
    ref, bat = members(arch, **sae), members(arch, **sae)
    stack = SeedStack(bat)
    ref_stats, bat_stats = [], []
    for t, x in enumerate(batches()):
        ref_stats.append([m.step(x, t) for m in ref])
        bat_stats.append([s for _, s, _ in stack.step(x, t, read=True)])
    return ref, stack, ref_stats, bat_stats


CASES = [
    ("relu", {}, True),
    ("jumprelu", {}, True),
    ("batchtopk", {"auxk_alpha": 0.0}, True),
    ("batchtopk", {}, False),  # AuxK
    ("topk", {"auxk_alpha": 0.0}, False),
    ("topk", {}, False),  # AuxK
]


@pytest.mark.parametrize(("arch", "sae", "exact"), CASES)
def test_stack_equals_per_member_path(arch: str, sae: dict, exact: bool) -> None:
    ref, stack, ref_stats, bat_stats = run_both(arch, **sae)
    for m, b in zip(ref, stack.members, strict=True):
        assert_close_tree(m.sae.state_dict(), b.sae.state_dict(), exact, m.key)
        assert torch.equal(m.tokens_since_fired, b.tokens_since_fired)
    for r, s in zip(ref_stats, bat_stats, strict=True):
        for x, y in zip(r, s, strict=True):
            if sae.get("auxk_alpha", 1) == 0:  # the stack skips AuxK (and its statistic) when unweighted
                x, y = x._replace(aux_loss=0.0), y._replace(aux_loss=0.0)
            assert list(x) == pytest.approx(list(y), rel=1e-5, abs=1e-6)
    if sae.get("auxk_alpha", 1) and arch != "relu" and arch != "jumprelu":
        assert max(s.aux_loss for step in ref_stats for s in step) > 0  # AuxK really ran
    assert not torch.equal(stack.members[0].sae.W_dec, stack.members[1].sae.W_dec)


def test_saved_states_equal_and_resume_continues_exactly() -> None:
    """member_states has the per-member format and values; loading it into a fresh stack continues bit for bit."""
    xs = batches()
    ref, bat = members("relu", train={"grad_clip": 0.5}), members("relu", train={"grad_clip": 0.5})
    stack = SeedStack(bat)
    for t, x in enumerate(xs[:6]):
        for m in ref:
            m.step(x, t)
        stack.step(x, t, read=False)
    states = stack.member_states()
    assert_close_tree({m.key: m.state_dict() for m in ref}, states, exact=True)
    for state in states.values():  # own storage, not a view of the whole stack
        w = state["sae"]["W_dec"]
        assert w.untyped_storage().nbytes() == w.numel() * w.element_size()
    resumed = members("relu", train={"grad_clip": 0.5})
    for m in resumed:
        m.load_state_dict(states[m.key])
    stack2 = SeedStack(resumed)
    for t, x in enumerate(xs[6:], start=6):
        stack.step(x, t, read=False)
        stack2.step(x, t, read=False)
    assert_close_tree(stack.member_states(), stack2.member_states(), exact=True)


def test_l0_controller_and_per_sae_lr_are_honoured() -> None:
    """Per-seed coefficients of the L0 controller (a [S] tensor) and the SAE's own lr / warm-up."""
    sae = {"target_l0": 3.0, "l1_warmup_steps": 2, "lr": 5e-3, "lr_warmup_steps": 2}
    ref, stack, _, _ = run_both("relu", **sae)
    assert {m.penalty_scale for m in ref} == {m.penalty_scale for m in stack.members} != {1.0}
    assert_close_tree({m.key: m.state_dict() for m in ref}, stack.member_states(), exact=True)


def test_stack_refuses_members_it_cannot_step_together() -> None:
    mixed = members("topk", seeds=(0,)) + members("topk", seeds=(1,), lr=1e-4)
    with pytest.raises(ConfigError, match="train.batched_seeds"):
        SeedStack(mixed)
    groups = make_groups(members("topk", seeds=(0, 1)) + members("relu", seeds=(3,)), batched=True)
    assert [type(g) for g in groups] == [SeedStack, SingleMember]
    assert list(group_states(groups)) == ["h/topk-64/seed0", "h/topk-64/seed1", "h/relu-64/seed3"]


def test_bfloat16_autocast_runs_on_cpu_tensors() -> None:
    """The CUDA bf16 autocast path, exercised on the CPU: same ops, loss close to float32."""
    stack = SeedStack(members("topk"))
    x = batches(1)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = stack.model(x, dead_mask=torch.ones(3, N, dtype=torch.bool), aux_k=8)
    full = stack.model(x, dead_mask=torch.ones(3, N, dtype=torch.bool), aux_k=8)
    (low.fvu.sum() + low.aux_loss.sum()).backward()
    assert stack.model.W_dec.grad is not None and torch.isfinite(stack.model.W_dec.grad).all()
    torch.testing.assert_close(low.fvu, full.fvu, atol=0.05, rtol=0.05)


# ---------------------------------------------------------------- through the trainer


def trainer_config(batched: bool, steps: int = 8, **train: Any):
    from tests.training.test_trainer import config

    cfg = config([0, 1], archs=("topk", "jumprelu"), steps=steps, **train)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batched_seeds=batched))


def train_lines(run_dir: Path) -> dict[tuple[int, str], dict[str, float]]:
    """metrics.jsonl's training lines: (step, key) -> loss, fvu, l0, lr."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {(r["step"], r["key"]): {k: r[k] for k in ("loss", "fvu", "l0", "lr")} for r in lines if r["kind"] == "train"}


def run_params(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f"{r.sae_name}/{r.seed}": load_sae(r.path).state_dict() for r in list_checkpoints(run_dir)}


def test_trainer_batched_run_equals_per_member_run_and_resumes_exactly(tmp_path: Path) -> None:
    from tests.training.test_trainer import Interrupting, pair, sparse_data, stream

    x = sparse_data()
    cfg = trainer_config(True, checkpoint_every=4, log_every=3)
    per_member = train_run(trainer_config(False, log_every=3), pair(x), tmp_path / "members")
    batched = train_run(cfg, pair(x), tmp_path / "batched")
    assert read_manifest(tmp_path / "batched")["config"]["train"]["batched_seeds"] is True
    a, b = run_params(tmp_path / "members"), run_params(tmp_path / "batched")
    assert_close_tree(a, b, exact=False)
    assert_close_tree({k: v for k, v in a.items() if k.startswith("jumprelu")},
                      {k: v for k, v in b.items() if k.startswith("jumprelu")}, exact=True)
    for key, metrics in per_member.metrics.items():
        assert batched.metrics[key]["fvu"] == pytest.approx(metrics["fvu"], rel=1e-4)
    logged = [train_lines(tmp_path / name) for name in ("members", "batched")]  # read only at steps 3, 6, 8
    assert list(logged[0]) == list(logged[1]) and {step for step, _ in logged[0]} == {3, 6, 8}
    for point, line in logged[0].items():
        assert logged[1][point] == pytest.approx(line, rel=1e-4), point
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, SourcePair(Interrupting(stream(x[:-256], 64), 6), [x[-256:]], {}), tmp_path / "cut")
    resumed = train_run(cfg, pair(x), tmp_path / "cut", resume=True)
    assert resumed.fingerprint == batched.fingerprint
    assert_close_tree(b, run_params(tmp_path / "cut"), exact=True)


def test_statistics_stay_on_the_device_until_read() -> None:
    """Unread steps are averaged on the device; read_pending returns their mean and count, then nothing."""
    ref, stack = members("topk"), SeedStack(members("topk"))
    xs = batches(3)
    per_step = [[m.step(x, t) for m in ref] for t, x in enumerate(xs)]
    assert all(stack.step(x, t, read=False) == [] for t, x in enumerate(xs))
    pending = read_pending([stack, SingleMember(members("relu", seeds=(5,))[0])])
    assert [(m.key, steps) for m, _, steps in pending] == [(m.key, 3) for m in stack.members]
    for s, (_, stats, _) in enumerate(pending):
        assert stats.fvu == pytest.approx(sum(step[s].fvu for step in per_step) / 3, rel=1e-5)
    assert read_pending([stack]) == []
