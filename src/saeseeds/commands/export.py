"""`saeseeds export SOURCE... --out DIR`: write SAEs in SAELens's format, or wrap foreign seeds into a run.

  saeseeds export SOURCE --format saelens --out DIR
  saeseeds export CKPT CKPT [...] --format run --hookpoint H [--model M] --out RUN

saelens: `cfg.json` + `sae_weights.safetensors` per SAE, read by `sae_lens.SAE.load_from_disk(DIR)` for every
architecture (topk → topk, relu → standard, jumprelu and batchtopk → jumprelu). A checkpoint (or hub name) is
written into DIR itself; a run or a folder of checkpoints keeps its layout (DIR/<hookpoint>/<config>/seed<N>/).
DIR/export.json lists what was written and from where.

run: the checkpoints (any format saeseeds reads, hub names too) become the seeds of one configuration, which
`saeseeds analyze RUN` reads; analyze then runs the model (--model, default the embedded one) at --hookpoint over
the corpus (--dataset, default the embedded one) to build its held-out set (docs/ecosystem.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saeseeds.commands._flags import add_overwrite_flag, add_quiet_flag
from saeseeds.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` verb."""
    p = subparsers.add_parser("export", help="write SAEs in SAELens's format, or wrap foreign SAEs into a run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="saelens: one checkpoint, run, folder of checkpoints or hub name; run: two or more checkpoints")
    p.add_argument("--format", dest="fmt", choices=("saelens", "run"), default="saelens",
                   help="target format (default saelens)")
    p.add_argument("--out", type=Path, required=True, help="output directory (new, empty, or an earlier export)")
    group = p.add_argument_group("--format run: where the SAEs' activations come from")
    group.add_argument("--model", default="", help="Hugging Face model id or local directory (default: the embedded "
                       "model)")
    group.add_argument("--hookpoint", default=None, help="the module whose output the SAEs read (required)")
    group.add_argument("--hook-input", action="store_true", help="the SAEs read the module's input instead")
    group.add_argument("--dataset", default="", help="corpus for held-out activations (default: the embedded one)")
    group.add_argument("--ctx-len", type=int, default=128, help="tokens per chunk (default 128)")
    group.add_argument("--keep-special-tokens", action="store_true",
                       help="the SAEs were trained with special tokens ([CLS], [SEP], BOS) included")
    group.add_argument("--name", default="", help="configuration name in the run (default <architecture>-<latents>)")
    add_overwrite_flag(p)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print where."""
    if args.fmt == "run":
        return _run_format(args)
    if len(args.sources) != 1:
        raise ConfigError(f"--format saelens: give one source (a checkpoint, run or folder), got {len(args.sources)}")
    import json

    from saeseeds.api.exporting import export

    manifest = export(args.sources[0], args.out, fmt=args.fmt, overwrite=args.overwrite)
    if not args.quiet:
        saes = json.loads(manifest.read_text())["saes"]
        for entry in saes:
            print(f"{entry['path']}: {entry['architecture']} -> SAELens {entry['saelens_architecture']} "
                  f"({entry['d_sae']} latents, d_in {entry['d_in']})")
        print(f"wrote {len(saes)} SAE(s) in {args.fmt} format to {args.out} (list in {manifest})")
    return 0


def _run_format(args: argparse.Namespace) -> int:
    """--format run: wrap the checkpoints into a run directory."""
    if not args.hookpoint:
        raise ConfigError("--format run needs --hookpoint (the module whose activations the SAEs read)")
    if args.ctx_len <= 1:
        raise ConfigError(f"--ctx-len: {args.ctx_len} must be at least 2 tokens")
    from saeseeds.api.exporting import export_run
    from saeseeds.config import LmConfig

    lm = LmConfig(model=args.model, hookpoints=[args.hookpoint], hook_input=args.hook_input, dataset=args.dataset,
                  ctx_len=args.ctx_len, exclude_special_tokens=not args.keep_special_tokens)
    manifest = export_run(args.sources, args.out, lm=lm, name=args.name, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote a run of {len(args.sources)} seeds to {args.out} ({manifest}); "
              f"study it with: saeseeds analyze {args.out} --out DIR")
    return 0
