"""`saeseeds cache CONFIG.toml --out DIR`: store a config's LM activations on disk for later training runs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from saeseeds.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cache",
        help="run the language model once and store its activations (sharded, hashed, resumable)",
        description=(
            "Compute the activations named by CONFIG's [lm] section (model, hookpoints, corpus) and write "
            "them to DIR as safetensors shards with a manifest. Rerunning on the same DIR resumes an "
            "interrupted job, skipping shards whose hashes verify. Train from it with "
            "data.source = \"cache\" and data.path = DIR. Config fields can be overridden (--lm.ctx_len 256)."
        ),
    )
    parser.add_argument("config", type=Path, help="TOML run config (its [lm] and [data] sections are used)")
    parser.add_argument("--out", type=Path, required=True, help="cache directory to write or resume")
    parser.add_argument(
        "--batches-per-shard", type=int, default=16, help="LM forward batches per shard file (default 16)"
    )
    parser.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from saeseeds.data.cache import write_cache
    from saeseeds.outputs import MARKER, check_output_dir, mark_output, output_kind

    cfg = load_config(args.config, args.overrides)
    created = False
    if output_kind(args.out) != "cache" and not (args.out / "manifest.json").is_file():
        check_output_dir(args.out, "cache")  # a new or empty directory; never another verb's or foreign files
        created = not args.out.exists()
        args.out.mkdir(parents=True, exist_ok=True)
        mark_output(args.out, "cache")
    try:
        manifest = write_cache(cfg, args.out, batches_per_shard=args.batches_per_shard, progress=cfg.train.progress)
    except BaseException:
        if created and {p.name for p in args.out.iterdir()} <= {MARKER}:
            shutil.rmtree(args.out, ignore_errors=True)  # failed before writing anything: leave nothing behind
        raise
    train = manifest["splits"]["train"]
    print(
        f"cached {manifest['train_tokens']:,} training tokens ({len(train['shards'])} shards) and "
        f"{manifest['splits']['eval']['tokens']:,} eval tokens of {manifest['model']} at "
        f"{', '.join(manifest['hookpoints'])} ({manifest['stored_dtype']}) in {args.out}"
    )
    print(f"train from it with: --data.source cache --data.path {args.out}")
    return 0
