#!/usr/bin/env python3
"""Speed-perturb a training data dir, Kaldi style: one copy per factor, via sox pipes.

For each factor f other than 1.0, every utterance gets a copy whose id and speaker
are prefixed ``sp<f>-`` (the perturbed speaker is a new speaker: pitch and tempo
both change) and whose ``wav.scp`` entry pipes the original audio through
``sox -R ... speed f``.  No audio is written here: the format stage decodes the pipes
like any other corpus entry.  ``-R`` seeds sox's automatic dither: without it every
decode of a pipe gives different samples, so two runs of the format stage (say
local and SLURM) would not produce the same features.  Durations in ``utt2dur`` are divided by f.  Factor
1.0 keeps the original utterances unchanged.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi_dirs import CopyMaker, copy_data_dir
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", type=Path, required=True, help="Source Kaldi data dir.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Perturbed data dir (replaced atomically).")
    parser.add_argument("--factors", type=float, nargs="+", default=[0.9, 1.0, 1.1], help="Speed factors.")
    return parser


def perturbed_entry(entry: str, factor: float) -> str:
    """A ``wav.scp`` value whose output is ``entry``'s audio at ``factor`` times the speed."""
    if entry.rstrip().endswith("|"):
        return f"{entry.rstrip()[:-1].rstrip()} | sox -R -t wav - -t wav - speed {factor} |"
    return f"sox -R {shlex.quote(entry)} -t wav - speed {factor} |"


def run(args: argparse.Namespace) -> None:
    """Write one copy of the data dir per factor into ``--out_dir``."""
    if any(factor <= 0 for factor in args.factors) or len(set(args.factors)) != len(args.factors):
        raise UserInputError(f"--factors must be distinct positive numbers, got {args.factors}")

    def maker(factor: float) -> CopyMaker:
        return lambda utt, entry, dur: (perturbed_entry(entry, factor), None if dur is None else dur / factor)

    copies = {("" if factor == 1.0 else f"sp{factor:g}-"): (None if factor == 1.0 else maker(factor))
              for factor in args.factors}
    count = copy_data_dir(args.in_dir, args.out_dir, copies)
    logger.info("%s: %d utterances (factors %s)", args.out_dir, count, args.factors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.speed_perturb --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
