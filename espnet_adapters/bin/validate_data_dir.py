"""Check a Kaldi data directory and list every problem by file and line.

Usage: python -m espnet_adapters.bin.validate_data_dir [--no-text] data/dir
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from espnet_adapters.data.kaldi import validate_data_dir
from espnet_adapters.utils.cli import make_parser, run_main

logger = logging.getLogger(__name__)

RULES = """\
Rules checked (Kaldi's validate_data_dir.sh, plus text hygiene), and why:

  Required files: wav.scp, utt2spk, spk2utt, text (unless --no-text).
  Optional: segments, utt2lang, utt2dur, utt2category, spk2gender, feats.scp,
  utt2num_frames.

  Every file: "key value" lines, UTF-8, newline-terminated, no CR, no empty
  lines, unique keys, sorted by key in LC_ALL=C (byte) order.  Kaldi and
  ESPnet merge files line by line like sort/join; unsorted or duplicated keys
  silently drop or mismatch utterances instead of failing.

  All utterance-level files (text, utt2*, segments, feats.scp, and wav.scp
  when there is no segments file) list the same utterances as utt2spk.

  utt2spk is sorted by speaker as well as by utterance: spk2utt must expand
  back to utt2spk exactly.  Make each speaker id a prefix of its utterance
  ids, joined with '-' (with '_', "spk1_a" sorts after "spk10-b").
  spk2utt must equal what utt2spk expands to; spk2gender (m/f) lists the same
  speakers.

  wav.scp: a path, a kaldiio extended filename such as "a.ark:1234", or a
  command ending in '|' (e.g. "sox x.flac -t wav - |").  With segments
  ("utt recording start end", 0 <= start < end) wav.scp is keyed by recording
  and lists exactly the recordings the segments use.

  utt2dur: positive seconds.  utt2num_frames: positive integers.

  text: no empty transcript; no no-break space (U+00A0, U+2007, U+202F:
  tokenizers do not split on them, so words merge); no non-printing character
  (Unicode Cc, Cf, Zl, Zp), except ZWJ U+200D and ZWNJ U+200C which
  Devanagari, Gurmukhi, Telugu etc. need for conjunct forms.

Exit status 0 if valid; 1 and one line per problem otherwise.  Repeated
problems of one kind in one file are listed up to a limit and then counted.
"""


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = RULES
    parser.add_argument("data_dir", help="Kaldi data directory, e.g. data/hi_train")
    parser.add_argument("--no-text", action="store_true", help="text is optional (still checked if present)")
    parser.add_argument(
        "--no-feats", action="store_true", help="accepted for Kaldi compatibility; feats.scp is never required"
    )
    parser.add_argument(
        "--check-audio", action="store_true", help="also check that every wav.scp path (not pipe) exists"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def _body(args: argparse.Namespace) -> int:
    problems = validate_data_dir(args.data_dir, no_text=args.no_text, check_audio=args.check_audio)
    for problem in problems:
        print(problem)
    if problems:
        logger.error("%s: %d problem(s); utils/fix_data_dir.sh repairs order and mismatched ids",
                     args.data_dir, len(problems))
        return 1
    logger.info("%s: valid", args.data_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
