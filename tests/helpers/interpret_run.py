"""A small real LM run for the `interpret` tests: a tiny GPT-2 (tests/helpers/tiny_lm.py) on a 60-word corpus,
3 seeds of one TopK SAE at `HOOK`, with the small sampling flags `SMALL` that keep an interpret of it fast."""

from __future__ import annotations

from pathlib import Path

HOOK = "transformer.h.1.mlp"
CONFIG = "topk-32"
SMALL = ["--latents", "6", "--window", "6", "--n-top", "3", "--n-explain-random", "2", "--n-score", "6",
         "--min-split", "2", "--freq-bins", "2", "--n-draws", "19"]


def build_interpret_run(root: Path) -> Path:
    """Train the run under `root` (also writes the corpus and the LM there); returns the run directory."""
    import torch

    from helpers.tiny_lm import build_tiny_causal_lm
    from saeseeds.config import DataConfig, LmConfig, RunConfig, SaeConfig, TrainConfig
    from saeseeds.data.sources import build_source
    from saeseeds.training import train_run

    g = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(60)]
    docs = [" ".join(words[i] for i in torch.randint(0, 60, (30,), generator=g).tolist()) for _ in range(120)]
    (root / "corpus.txt").write_text("\n".join(docs))
    lm = build_tiny_causal_lm(root / "lm", docs, d_model=16, n_layer=2)
    cfg = RunConfig(
        data=DataConfig(source="lm"),
        lm=LmConfig(model=str(lm), hookpoints=[HOOK], dataset=str(root / "corpus.txt"), ctx_len=24,
                    eval_chunks=30, lm_batch_size=16),
        train=TrainConfig(seeds=[0, 1, 2], batch_size=128, num_tokens=2560, eval_tokens=256, progress=False,
                          lr_warmup_steps=5, checkpoint_every=1000, lm_loss=False),
        saes=[SaeConfig(architecture="topk", num_latents=32, k=4)],
    )
    train_run(cfg, build_source(cfg), root / "run")
    return root / "run"
