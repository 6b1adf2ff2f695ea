#!/usr/bin/env python3
"""Report on code-switched decoding: WER per system, degradation vs single-language, switch detection.

Each ``--sets DATA_DIR:DECODE_DIR`` pairs a make_codeswitch dir (one kind:
inter or rapid) with its codeswitch_decode output; the set is named after
DATA_DIR.  For every system of the decoding (stats.json):

WER / CER
    with score.py's normaliser and alignments (espnet_adapters.scoring), against
    the concatenated reference; the normaliser is given the utterance's utt2lang
    language (none of the languages has a rule of its own, so a mixed text is
    normalised like any other).  A missing hypothesis is scored as empty.
Degradation vs single-language
    the same constituents decoded one at a time, each as a single-language
    utterance: ``--single_hyps`` are Kaldi hyp files keyed by the constituents'
    ids (segments_truth's srcutt), e.g. the per-language test sets decoded with
    oracle routing.  Each code-switched utterance's single-language hypothesis is
    its constituents' hypotheses joined in the same order, scored against the
    same reference, so both WERs count exactly the same words;
    degradation = 100 * (WER_cs - WER_single) / WER_single (relative, %).
Switch detection (systems with a ``detected`` file: segments)
    for each true switch (``switches``) the distance to the nearest detected
    switch of its utterance, |detected - true|: mean, median, max, and the mean
    signed value (positive: detected late).  A true switch is *hit* when that
    distance is at most ``--tolerance`` (0.5 s), else *missed* (also when the
    utterance has no detected switch, which leaves it out of the distance
    statistics); a detected switch with no true switch within the tolerance is
    a *false alarm*.  ``within_tolerance`` = hits / true switches.

Writes into ``--out_dir``:
  <set>/<system>/result.txt, <set>/single/result.txt   sclite-like word alignments
  posteriors.png   window-level LID posteriors over time of ``--plot_utts`` utterances
                   (one line per language; true switches solid, detected dashed)
  codeswitch.md    a "## Code-switched test sets" section (for make_results --extra_md): set x
                   system: WER, CER, single-language WER, degradation, switch delay mean/median,
                   % within tolerance, misses, false alarms; then the seed targets (degradation
                   < --max_degradation %, median delay <= --tolerance s) met or not
  results.json     all of the above as numbers, written last
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.codeswitch.report import SetPaths, write_report
from espnet_adapters.utils.cli import make_parser, run_main


def parse_set(text: str) -> SetPaths:
    """``DATA_DIR:DECODE_DIR`` as an argparse ``type``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected DATA_DIR:DECODE_DIR, got {text!r}")
    return SetPaths(Path(parts[0]), Path(parts[1]))


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--sets", type=parse_set, nargs="+", required=True,
                        help="DATA_DIR:DECODE_DIR of each code-switched set (make_codeswitch, codeswitch_decode).")
    parser.add_argument("--single_hyps", type=Path, nargs="+", required=True,
                        help="Kaldi hyp files of the constituents decoded singly (e.g. exp/routing/oracle/hyp).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--tolerance", type=float, default=0.5, help="A switch detected within this many s is a hit.")
    parser.add_argument("--max_degradation", type=float, default=15.0,
                        help="Seed target: relative WER degradation (%%) vs single-language below this.")
    parser.add_argument("--plot_utts", type=int, default=4, help="Utterances in posteriors.png (0: no plot).")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="The plot's link in codeswitch.md is relative to this dir (where RESULTS.md is);"
                             " default: --out_dir.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Score every set, plot, write the table and results.json (espnet_adapters.codeswitch.report)."""
    write_report(args.sets, args.single_hyps, args.out_dir, tolerance=args.tolerance,
                 max_degradation=args.max_degradation, plot_utts=args.plot_utts, link_dir=args.link_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.codeswitch_report --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
