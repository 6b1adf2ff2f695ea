#!/usr/bin/env python3
"""Choose the threshold strategy's τ on dev: the candidate with the lowest pooled dev WER.

Ties go to the higher τ (hard routing more often, fewer adapter mixtures).  Stage 10 of
adapt.sh runs it after decoding the pooled dev sets with every candidate.

Reads:
  <routing_dir>/dev/threshold_tau<τ>/score/scores.json   one per --taus candidate (score.py)
Writes, atomically:
  <routing_dir>/tau_selection.json   {"candidates": [{"tau", "dev_wer", "dev_cer"}, ...], "chosen": τ}
Prints the chosen τ on stdout (e.g. 0.7), for the recipe to pass to route_decode.

  python3 -m espnet_adapters.bin.select_tau --routing_dir exp/whisper_base_routing_r32_qv_dec --taus 0.5 0.7 0.9
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.routing.tau import TAU_SELECTION, select_tau, write_tau_selection
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--routing_dir", type=Path, required=True,
                        help="exp/<model>_routing_<tag>: dev/threshold_tau<τ>/ inside, tau_selection.json written.")
    parser.add_argument("--taus", nargs="+", required=True,
                        help="Candidate τ values, spelt as in the directory names (--route_taus).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Select, record and print τ (espnet_adapters.routing.tau)."""
    selection = select_tau(args.routing_dir, args.taus)
    write_tau_selection(args.routing_dir / TAU_SELECTION, selection)
    print(selection.chosen)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.select_tau --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
