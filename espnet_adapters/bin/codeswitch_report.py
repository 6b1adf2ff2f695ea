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
    true (``switches``) and detected switches of an utterance are matched one to
    one, closest pairs first, a pair only within ``--tolerance`` (0.3 s): a
    matched pair is a *hit*, an unmatched true switch *missed*, an unmatched
    detection a *false alarm*; precision = hits / detected, recall = hits /
    true, F1; the delay |detected - true| (mean, median; signed mean: positive =
    late) is over the hits.

Writes into ``--out_dir``:
  <set>/<system>/result.txt, <set>/single/result.txt   sclite-like word alignments
  posteriors.png   window-level LID posteriors over time of ``--plot_utts`` utterances
                   (one line per language; true switches solid, detected dashed)
  codeswitch.md    a "## Code-switched test sets" section (for make_results --extra_md): set x
                   system: WER, CER, single-language WER, degradation, switch precision / recall,
                   misses / false alarms, delay mean / median; then the WER target (degradation
                   < --max_degradation %) met or not, with each set's switch recall and precision;
                   ``--smoothing_md`` (select_smoothing's dev table) appended when given
  results.json     all of the above as numbers, written last
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.codeswitch.report import parse_set_paths, write_report
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--sets", type=parse_set_paths, nargs="+", required=True,
                        help="DATA_DIR:DECODE_DIR of each code-switched set (make_codeswitch, codeswitch_decode).")
    parser.add_argument("--single_hyps", type=Path, nargs="+", required=True,
                        help="Kaldi hyp files of the constituents decoded singly (e.g. exp/routing/oracle/hyp).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--tolerance", type=float, default=0.3,
                        help="A detected switch within this many s of a true one can be its hit.")
    parser.add_argument("--max_degradation", type=float, default=15.0,
                        help="Seed target: relative WER degradation (%%) vs single-language below this.")
    parser.add_argument("--plot_utts", type=int, default=4, help="Utterances in posteriors.png (0: no plot).")
    parser.add_argument("--smoothing_md", type=Path, default=None,
                        help="select_smoothing's smoothing.md (the dev choice), appended to codeswitch.md.")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="The plot's link in codeswitch.md is relative to this dir (where RESULTS.md is);"
                             " default: --out_dir.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Score every set, plot, write the table and results.json (espnet_adapters.codeswitch.report)."""
    write_report(args.sets, args.single_hyps, args.out_dir, tolerance=args.tolerance,
                 max_degradation=args.max_degradation, plot_utts=args.plot_utts, link_dir=args.link_dir,
                 smoothing_md=args.smoothing_md)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.codeswitch_report --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
