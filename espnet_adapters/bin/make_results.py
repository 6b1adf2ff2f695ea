#!/usr/bin/env python3
"""Write RESULTS.md from every scores.json of an exp/ tree.

Reads <exp_dir>/<model_tag>/decode_<set>[_<variant>]/score/scores.json (written
by espnet_adapters.bin.score) and writes, atomically:

  - a header: date (UTC), git commit of this repository, python / torch /
    transformers / espnet versions, CPU count, text normalizer, and the --command
    lines that reproduce the results (one per run that wrote into the exp dir, e.g.
    the Whisper and the OWSM run of a recipe);
  - per decoding variant (decode_hi_test -> "default", decode_hi_test_beam5 ->
    "beam5"), when adapters were scored, the adapters-vs-base table: each
    language's adapter on its own test set against the base model, WER, CER and
    Corr (words correct, hits / reference words), the changes with paired
    bootstrap 95% confidence intervals from both decodings' score/per_utt.tsv
    (--bootstrap_resamples, --bootstrap_seed), and "n/a (both > 100%)" instead of
    a change between two rates that both exceed 100%;
  - one summary table per decoding variant: rows are model tags, columns
    languages, cells "WER / CER (n=#utterances)" in percent, each followed by a
    Corr column;
  - per model, ESPnet-style detailed tables |dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
    for words and for characters;
  - the content of --extra_md, verbatim (give it its own "## ..." heading);
  - with --timing (the recipe's exp/log/timing.tsv), the wall time of every stage of every
    invocation that wrote into the exp dir.

Decodings without scores.json are not listed; finding none at all is an error,
so that a wrong --exp_dir never overwrites RESULTS.md with an empty table.  A
per_utt.tsv that does not add up to its scores.json, or base and adapter
decodings scored on different utterances, are errors naming the file and line.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.scoring.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
from espnet_adapters.scoring.results import collect_environment, find_entries, render_results
from espnet_adapters.scoring.timing import read_timing, render_timing
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

# The checkout this package lives in: its commit is the code that produced the results.
_REPO_DIR = Path(__file__).resolve().parents[2]


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", type=Path, default=Path("exp"), help="Experiment directory to scan.")
    parser.add_argument("--out", type=Path, default=Path("RESULTS.md"), help="Markdown file to write.")
    parser.add_argument(
        "--command", action="append", default=[],
        help="Command line that reproduces (part of) the results, shown in the header; repeatable.",
    )
    parser.add_argument("--extra_md", type=Path, default=None, help="Markdown file appended at the end.")
    parser.add_argument(
        "--timing", type=Path, default=None,
        help="The recipe's timing.tsv (run_started, stage, seconds, status): a wall-time section.",
    )
    parser.add_argument(
        "--bootstrap_resamples", type=int, default=DEFAULT_RESAMPLES,
        help="Resamples of the paired bootstrap confidence intervals (adapters vs base).",
    )
    parser.add_argument(
        "--bootstrap_seed", type=int, default=DEFAULT_SEED,
        help="Seed of the paired bootstrap: the same seed and scores give the same intervals.",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Scan, render and write."""
    if args.bootstrap_resamples < 1:
        raise UserInputError(f"--bootstrap_resamples must be positive, got {args.bootstrap_resamples}")
    if not args.exp_dir.is_dir():
        raise UserInputError(f"{args.exp_dir}: no such directory")
    entries = find_entries(args.exp_dir)
    if not entries:
        raise UserInputError(f"{args.exp_dir}: no */decode_*/score/scores.json found")
    extra_md = None
    if args.extra_md is not None:
        try:
            extra_md = args.extra_md.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserInputError(f"{args.extra_md}: cannot read ({err})") from err
    text = render_results(
        entries, collect_environment(_REPO_DIR), args.command, extra_md,
        num_resamples=args.bootstrap_resamples, seed=args.bootstrap_seed,
    )
    if args.timing is not None:
        text += "\n" + render_timing(read_timing(args.timing), str(args.timing))
    with atomic_write(args.out) as out:
        out.write(text)
    logger.info("wrote %s (%d scored decodings)", args.out, len(entries))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.make_results --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
