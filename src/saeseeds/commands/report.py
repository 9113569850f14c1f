"""`saeseeds report DIR [--out FILE]`: one self-contained HTML page for any saeseeds output.

DIR is a run, a comparison, an analysis, a synthetic experiment, a study, a pool, or a directory holding
several (a demo): the page covers every output in it, in sections, with figures embedded (no network, no
other file needed). Written to DIR/report.html unless --out names another file; an existing file is replaced
only when it is an earlier saeseeds report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MAX_LATENTS = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` verb."""
    p = subparsers.add_parser("report", help="one self-contained HTML page for a run, comparison, analysis, ...",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", type=Path, help="a saeseeds output directory (or a directory holding several)")
    p.add_argument("--out", type=Path, default=None, help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--max-latents", type=int, default=DEFAULT_MAX_LATENTS,
                   help=f"latents listed per configuration, half most and half least stable (≥ 0; "
                        f"default {DEFAULT_MAX_LATENTS}; 0 leaves the latent pages out)")
    p.add_argument("--no-contexts", action="store_true",
                   help="skip the latents' top contexts (they need one SAE encode of the held-out set)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Parse, call the API, print the page's path."""
    from saeseeds.api.report import write_report

    path = write_report(args.dir, args.out, max_latents=args.max_latents, contexts=not args.no_contexts)
    if not getattr(args, "quiet", False):
        print(f"wrote {path}")
    return 0
