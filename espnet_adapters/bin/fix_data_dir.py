"""Repair a Kaldi data directory in place, as Kaldi's fix_data_dir.sh does.

Usage: python -m espnet_adapters.bin.fix_data_dir data/dir
"""

from __future__ import annotations

import argparse
from typing import Sequence

from espnet_adapters.data.kaldi import fix_data_dir
from espnet_adapters.utils.cli import make_parser, run_main

WHAT = """\
What it does, and why:

  * sorts every known file in LC_ALL=C order (Kaldi tools merge files like
    sort/join and need it);
  * drops empty lines, exact duplicate lines and empty transcripts;
  * keeps only utterances present in every utterance-level file (text, utt2*,
    segments, feats.scp, and wav.scp when there is no segments file) and, with
    segments, whose recording is in wav.scp; keeps only the recordings and
    speakers still used;
  * regenerates spk2utt from utt2spk.

Originals of rewritten files are kept in DIR/.backup/.  The new directory is
built beside the old one, validated, and only then swapped in, so a failure
leaves DIR untouched.  It refuses (exit 1, DIR untouched) what it cannot
decide or repair: a key repeated with different values, CR line ends,
invalid UTF-8, a utt2spk that cannot be sorted by speaker (rename speakers
to be prefixes of utterance ids), bad characters in text.
"""


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = WHAT
    parser.add_argument("data_dir", help="Kaldi data directory, e.g. data/hi_train")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def _body(args: argparse.Namespace) -> int:
    fix_data_dir(args.data_dir)  # logs what it removed
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
