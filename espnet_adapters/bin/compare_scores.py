#!/usr/bin/env python3
"""Two scored decodings of the same test set side by side: WER / CER / words correct and the paired
bootstrap 95% CI of each difference (system - base), one Markdown row per pair, on stdout.

A lever study compares systems that RESULTS.md does not pair (it pairs each adapter with its
base model): an adapter trained one way against one trained another way, two decoding rules.

  python3 -m espnet_adapters.bin.compare_scores \\
      exp/whisper_base_lora_it_r32_qv_dec/decode_it_test/score \\
      exp/whisper_base_lora_it_r32_qv_dec_speech1.0/decode_it_test_speech/score [BASE SYSTEM ...]

Arguments: score dirs (or their scores.json), in pairs BASE SYSTEM.  Both need the per_utt.tsv of
stage 8; the utterances must be the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.scoring.results import comparison_table, load_entry
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("score_dirs", nargs="+", type=Path, help="BASE SYSTEM [BASE SYSTEM ...]: score dirs.")
    return parser


def _scores_json(path: Path) -> Path:
    path = path / "scores.json" if path.is_dir() else path
    if not path.is_file():
        raise UserInputError(f"{path}: no such scores.json (stage 8 writes <decode dir>/score/scores.json)")
    return path


def run(args: argparse.Namespace) -> None:
    """Load the pairs, print the table."""
    if len(args.score_dirs) % 2:
        raise UserInputError(f"{len(args.score_dirs)} score dirs: expected pairs BASE SYSTEM")
    entries = [load_entry(_scores_json(path)) for path in args.score_dirs]
    print("\n".join(comparison_table(list(zip(entries[::2], entries[1::2])))))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.compare_scores --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
