#!/usr/bin/env python3
"""Report the LID stage and the adapter-routing strategies: a markdown section and a bar chart.

The question the routing experiment answers is whether an unknown-language
utterance can be sent to the right adapter(s) at little cost in WER and in
latency; the yardstick is oracle routing (the true language's adapter).  This
program puts the measurements of eval_lid, route_decode and score side by side
and checks the WER against the seed target (--max_wer_gap); the latency target
(--max_overhead_ms) is stated but not judged from the decodes' single timing.

Reads:
  <lid_dir>/eval_test/results.json, timing.json, confusion.md (and links confusion.png)
  <routing_dir>/<strategy>/score/scores.json     score.py on the pooled test set,
                                                 --utt2category utt2lang (by_category = per language)
  <routing_dir>/<strategy>/[<set>/]logdir/output.*/stats.json   one per decode job
  <routing_dir>/<strategy>/routing, hyp_lang     routed language per utterance
  <routing_dir>/tau_selection.json               {candidates: [{tau, dev_wer, dev_cer}], chosen}
                                                 (read when the threshold strategy is reported)
  --utt2lang                                     the pooled test set's true languages

Per strategy: WER / CER pooled and per language; routing accuracy (the
``routing`` file's language column, which for soft and threshold mixtures is the
adapter of largest weight, i.e. the argmax language; for base Whisper's own
detection, ``hyp_lang``); relative WER gap to oracle; decode ms per utterance
(decode seconds summed over the jobs / utterances); LID ms per utterance
(eval_lid's timing.json; none for oracle; for base Whisper's detection runs inside
the timed decode, so it is not added again); overhead = decode + LID ms - oracle
decode ms.  A strategy dir that does not exist is skipped with a warning; without
oracle the gap, overhead and target columns say n/a.

Writes, atomically: --out_md, with "## Language ID" and "## Adapter routing"
(meant for make_results --extra_md), and --out_png, WER per language and pooled,
one bar per strategy.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.routing.report import Targets, write_report
from espnet_adapters.routing.results import STRATEGIES
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--routing_dir", type=Path, required=True, help="exp/routing_<tag>: one dir per strategy.")
    parser.add_argument("--lid_dir", type=Path, required=True, help="exp/<model>_lid_<tag> (eval_test inside).")
    parser.add_argument("--utt2lang", type=Path, required=True, help="True language of every pooled test utterance.")
    parser.add_argument("--out_md", type=Path, required=True, help="Markdown section to write.")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="Image links are relative to this dir (where RESULTS.md is); default: --out_md's dir.")
    parser.add_argument("--out_png", type=Path, required=True, help="Bar chart to write (routing.png).")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
                        help="Strategies to report, in table order.")
    parser.add_argument("--lid_timing_key", default="lid_ms_per_utt_batch1_median",
                        help="timing.json entry used as LID ms per utterance (an utterance routed on its own).")
    parser.add_argument("--max_wer_gap", type=float, default=Targets.max_wer_gap,
                        help="Target: relative pooled WER degradation vs oracle below this many %%.")
    parser.add_argument("--max_overhead_ms", type=float, default=Targets.max_overhead_ms,
                        help="Target: latency overhead vs oracle below this many ms per utterance (stated, not judged).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Write the report (espnet_adapters.routing.report)."""
    write_report(args.routing_dir, args.lid_dir, args.utt2lang, args.out_md, args.out_png,
                 strategies=args.strategies, lid_timing_key=args.lid_timing_key,
                 targets=Targets(args.max_wer_gap, args.max_overhead_ms), link_dir=args.link_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.routing_report --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
