"""Training under torchrun (2-3 CPU ranks, gloo) gives bit-identical checkpoints to one process, and a run
interrupted on 2 ranks resumes on 3 to the same final weights."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tests.distributed.conftest import torchrun_script

DOCS = [f"sentence {i} : the cat sat on the mat while {i % 5} birds sang loudly" for i in range(80)]

JOB = textwrap.dedent(
    """
    import os, sys
    from saeseeds.config import RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.distributed import launched
    from saeseeds.training import train_run

    root, out, mode, die_at, forward = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    cfg = RunConfig()
    cfg.data.source = "lm"
    cfg.lm.model, cfg.lm.dataset = f"{root}/model", f"{root}/corpus.jsonl"
    cfg.lm.hookpoints = ["gpt_neox.layers.0.mlp", "gpt_neox.layers.1.mlp"]
    cfg.lm.ctx_len, cfg.lm.eval_chunks, cfg.lm.lm_batch_size, cfg.lm.device = 16, 4, 5, "cpu"
    cfg.lm.distributed_forward = forward
    cfg.train = TrainConfig(seeds=[0, 1], batch_size=48, num_tokens=48 * 8, progress=False, device="cpu",
                            checkpoint_every=2, lr_warmup_steps=2, eval_every=4)
    cfg.saes = [SaeConfig(architecture="topk", num_latents=32, k=3),
                SaeConfig(architecture="relu", num_latents=24, l1_coefficient=1.0)]

    class DieAt:
        # every rank reads the same stream, so every rank dies at the same batch: a kill between commits
        def __init__(self, inner):
            self.inner = inner
        def __iter__(self):
            for n, batch in enumerate(self.inner):
                if n == die_at:
                    os._exit(17)
                yield batch

    with launched("cpu", timeout_s=60):
        pair = build_source(cfg)
        if die_at >= 0:
            pair = pair._replace(train=DieAt(pair.train))
        train_run(cfg, pair, out, resume=mode == "resume")
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from helpers.tiny_lm import build_tiny_causal_lm

    root = tmp_path_factory.mktemp("dist")
    build_tiny_causal_lm(root / "model", DOCS, architecture="gpt_neox")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    script = root / "job.py"
    script.write_text(JOB)
    ref = root / "single"
    proc = subprocess.run([sys.executable, str(script), str(root), str(ref), "new", "-1", "sharded"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, script, ref


def weights(run: Path) -> dict[str, dict]:
    return {str(p.relative_to(run)): load_file(p) for p in sorted(run.glob("*/*/seed*/sae.safetensors"))}


def assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert len(wa) == 8 and wa.keys() == wb.keys()  # 2 hookpoints x 2 configurations x 2 seeds
    for key in wa:
        assert wa[key].keys() == wb[key].keys()
        for name in wa[key]:
            assert wa[key][name].equal(wb[key][name]), f"{key}:{name} differs"
    ma, mb = json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())
    assert ma["fingerprint"] == mb["fingerprint"]
    assert ma["eval"]["metrics"] == mb["eval"]["metrics"]
    assert [s["path"] for s in ma["saes"]] == [s["path"] for s in mb["saes"]]


@pytest.mark.slow
@pytest.mark.parametrize("nproc,forward", [(2, "sharded"), (3, "replicated")])
def test_distributed_training_is_bit_identical(setup, nproc, forward) -> None:
    root, script, ref = setup
    out = root / f"ranks{nproc}-{forward}"
    proc = torchrun_script(script, [str(root), str(out), "new", "-1", forward], nproc, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_bit_identical(ref, out)
    assert json.loads((out / "run.json").read_text())["world_size"] == nproc
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines == (ref / "metrics.jsonl").read_text().splitlines()  # rank 0 wrote every member's lines


@pytest.mark.slow
def test_interrupted_on_two_ranks_resumes_on_three(setup) -> None:
    root, script, ref = setup
    out = root / "cut"
    proc = torchrun_script(script, [str(root), str(out), "new", "5", "sharded"], 2, timeout=180,
                           extra=["--max-restarts=0"])
    assert proc.returncode != 0
    pointer = json.loads((out / ".state" / "trainer.json").read_text())
    assert pointer["step"] in (2, 4, 6) and pointer["world_size"] == 2  # died between commits, mid-run
    proc = torchrun_script(script, [str(root), str(out), "resume", "-1", "sharded"], 3, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_bit_identical(ref, out)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
