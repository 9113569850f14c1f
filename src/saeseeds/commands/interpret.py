"""`saeseeds interpret RUN_OR_OUTPUT --out DIR`: are shared / unshared and stable / unstable latents interpretable?

For frequency-matched samples of latents per stability group, explanations are written from activating contexts
of the run's stored token rows and scored by detection (and fuzzing) on contexts the explainer never saw, against
non-activating contexts of matched token frequency; then three claims are tested per seed with Holm over them.
The default explainer, `tokens`, is a lexical baseline (top tokens and n-grams, no language model). The input is
a run directory (its seeds are aligned here unless --compare names a compare output of it), or a compare, study
or demo output (the comparison at the end of training). --from-delphi DIR reads the explanations and scores
EleutherAI's delphi wrote for the run's seeds instead of explaining here. A failure leaves every latent already scored in DIR's
journal; the same command again continues from there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saeseeds.commands._flags import (
    add_overwrite_flag,
    add_quiet_flag,
    add_rule_flags,
    rule_from_args,
)
from saeseeds.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `interpret` verb."""
    p = subparsers.add_parser(
        "interpret", help="explanations and detection scores per stability group; are unshared latents interpretable?",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", type=Path, metavar="RUN_OR_OUTPUT",
                   help="a run directory, or a compare, study or demo output")
    p.add_argument("--out", type=Path, required=True, help="output directory (new, empty, an unfinished or, with "
                   "--overwrite, an earlier interpret output)")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="with a run directory: a `saeseeds compare` output of it (reuse its alignments)")
    p.add_argument("--explainer", default=None, metavar="SPEC",
                   help="tokens (default: offline lexical baseline), hf:PATH (a local causal LM) or "
                        "openai:URL[#MODEL] (an OpenAI-compatible chat endpoint)")
    p.add_argument("--from-delphi", type=Path, default=None, metavar="DIR",
                   help="instead of an explainer: delphi's results/ folder, holding saeseeds-<config>-<seed>/ per "
                        "seed (docs/ecosystem.md); its explanations and detection/fuzz scores are used, and only the "
                        "latents delphi scored are sampled")
    p.add_argument("--config", action="append", default=[], metavar="NAME",
                   help="interpret only this SAE configuration (repeatable; default all with two or more seeds)")
    p.add_argument("--latents", type=int, default=40, metavar="N",
                   help="latents sampled per group and seed, frequency-matched between the groups of a pair (≥ 1)")
    p.add_argument("--window", type=int, default=16, help="tokens per context window (≥ 2)")
    p.add_argument("--n-top", type=int, default=10, help="strongest activating windows shown to the explainer (≥ 0)")
    p.add_argument("--n-explain-random", type=int, default=10,
                   help="further activating windows shown, drawn over activation quantiles (≥ 0)")
    p.add_argument("--n-score", type=int, default=20,
                   help="activating windows scored per latent, drawn over activation quantiles (≥ 1)")
    p.add_argument("--min-split", type=int, default=5,
                   help="fewest activating windows in each split for a latent to be eligible (≥ 1)")
    p.add_argument("--freq-bins", type=int, default=5, help="log-frequency bins of the group matching (≥ 1)")
    p.add_argument("--margin", type=float, default=0.05,
                   help="equivalence margin δ on detection AUROC for 'unshared as interpretable as shared', in (0, 0.5)")
    p.add_argument("--n-draws", type=int, default=999, help="permutation draws per test (≥ 1)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level of the Holm-corrected verdicts")
    p.add_argument("--batch", type=int, default=16, help="latents per explain call; each is journaled once scored")
    p.add_argument("--no-fuzz", action="store_true", help="skip the fuzzing score")
    p.add_argument("--analysis-tokens", type=int, default=None, metavar="N",
                   help="LM runs: run the LM over training chunks to reach N rows (default: the stored held-out "
                        "rows only, no LM forward)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and the permutations")
    add_rule_flags(p)
    add_overwrite_flag(p)
    add_quiet_flag(p)
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """One line naming the flag for every out-of-range value (the sampling flags are checked by SamplingOptions)."""
    checks = [("--margin", 0 < args.margin < 0.5, "in (0, 0.5)"), ("--n-draws", args.n_draws >= 1, "≥ 1"),
              ("--alpha", 0 < args.alpha < 1, "in (0, 1)"), ("--batch", args.batch >= 1, "≥ 1"),
              ("--analysis-tokens", args.analysis_tokens is None or args.analysis_tokens >= 1, "≥ 1")]
    for flag, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{flag}: {getattr(args, flag[2:].replace('-', '_'))} is out of range (allowed: {allowed})")


def run(args: argparse.Namespace) -> int:
    """Parse, call the API, print each configuration's group scores and verdicts."""
    _check(args)
    from saeseeds.interpret.choose import check_spec
    from saeseeds.interpret.pipeline import InterpretOptions
    from saeseeds.interpret.sampling import SamplingOptions

    if args.from_delphi is not None and args.explainer is not None:
        raise ConfigError("--from-delphi and --explainer are alternatives: delphi's files hold the explanations")
    explainer = args.explainer or "tokens"
    check_spec(explainer)
    sampling = SamplingOptions(latents=args.latents, window=args.window, n_top=args.n_top,
                               n_explain_random=args.n_explain_random, n_score=args.n_score,
                               min_split=args.min_split, freq_bins=args.freq_bins, seed=args.seed)
    opts = InterpretOptions(sampling=sampling, rule=rule_from_args(args), margin=args.margin, n_draws=args.n_draws,
                            alpha=args.alpha, batch=args.batch, fuzz=not args.no_fuzz, progress=not args.quiet)
    from saeseeds.api.interpret import interpret

    result = interpret(args.source, out=args.out, compare=args.compare, explainer=explainer, options=opts,
                       configs=args.config, analysis_tokens=args.analysis_tokens, overwrite=args.overwrite,
                       from_delphi=args.from_delphi)
    if not args.quiet:
        print_result(result.record)
    print(f"wrote {args.out / 'interpret.json'}")
    return 0


def print_result(record: dict) -> None:
    """Per configuration: mean detection AUROC per group (mean ± sd over seeds), then the verdicts."""
    from saeseeds.interpret.claims import claim_line

    label = record["explainer"]["label"]
    print(f"explainer: {record['explainer']['name']} ({label})")
    for name, s in record["sets"].items():
        print(f"{name}: detection AUROC per group ({label}), mean ± sd over seeds")
        for group, g in s["summary"].items():
            n = sum(p["n"] for p in g["per_seed"])
            print(f"  {group:<9} {_num(g['detection_auroc_mean'])} ± {_num(g['detection_auroc_sd'])}  ({n} latents)")
        for claim, verdict in s["claims"].items():
            print(f"  {claim_line(claim, verdict)}")


def _num(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"
