#!/usr/bin/env python3
"""Choose the code-switch detector's smoothing on dev: the highest switch F1 over the candidates.

Each ``--sets DATA_DIR:DECODE_DIR`` is a dev code-switched set (make_codeswitch on
the dev sets) and its codeswitch_decode analysis (``--systems`` none: window-level
LID posteriors, no decoding).  Every candidate (a majority vote over each of
``--smooth_windows`` windows; Viterbi with each of ``--switch_penalties``)
re-detects the switches from the saved posteriors; true and detected switches
are matched one to one within ``--tolerance`` s (codeswitch_report's metric),
pooled over the sets; the highest F1 wins, ties go to the later candidate (majority
votes, then Viterbi, each by increasing smoothing; espnet_adapters.codeswitch.tune).

Writes, atomically, into ``--out_dir``: smoothing.md (the dev table), then
smoothing.json (every candidate's precision, recall, F1, delays; the chosen one
and its flags).  Prints the chosen candidate's codeswitch_decode flags on stdout
(e.g. ``--smoothing viterbi --switch_penalty 8``), for the recipe.

  python3 -m espnet_adapters.bin.select_smoothing \\
      --sets dump/raw/cs_inter_dev:exp/routing/codeswitch/dev/cs_inter_dev --out_dir exp/routing/codeswitch/dev
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.codeswitch.report import parse_set_paths
from espnet_adapters.codeswitch.tune import candidates, select_smoothing, write_selection
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--sets", type=parse_set_paths, nargs="+", required=True,
                        help="DATA_DIR:DECODE_DIR of each dev code-switched set and its analysis.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where smoothing.md and smoothing.json go.")
    parser.add_argument("--smooth_windows", type=int, nargs="*", default=[1, 3, 5, 7, 9],
                        help="Majority-vote candidates (odd window counts).")
    parser.add_argument("--switch_penalties", type=float, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                        help="Viterbi candidates (nats per change of language).")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="A detected switch within this many s of a true one can be its hit (coarser than the"
                             " report's 0.3 s: a switch found 0.5 s off still cuts two sentences nearly right, a"
                             " false alarm splits one).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Select, record and print the flags (espnet_adapters.codeswitch.tune)."""
    if args.tolerance <= 0:
        raise UserInputError(f"--tolerance {args.tolerance}: must be > 0")
    try:
        grid = candidates(args.smooth_windows, args.switch_penalties)
    except ValueError as err:
        raise UserInputError(f"--smooth_windows / --switch_penalties: {err}") from err
    selection = select_smoothing(args.sets, grid, args.tolerance)
    write_selection(args.out_dir, selection)
    print(" ".join(selection["flags"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.select_smoothing --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
