"""Prepare one real corpus, for one language, as Kaldi data directories.

Reads the corpus in the layout it is downloaded in (see README, "Real corpora")
and writes, for every split it provides:

  <data_dir>/<corpus>_<lang>_<split>/   wav.scp text utt2spk spk2utt utt2lang utt2dur
                                        utt2category [spk2gender] [segments] stats.json

Splits are ``train``, ``dev`` and ``test`` (named after ours, whatever the corpus
calls them) plus corpus extras such as Kathbath's ``test_known`` (speakers seen in
training, kept apart on purpose).  Rows that cannot be used (missing or unreadable
clip, empty transcript, duration outside --min_dur/--max_dur) are skipped with a
warning naming the file and row and a count per reason; a split with nothing usable
left is an error.  No speaker may appear in two of train/dev/test: the check fails
the preparation otherwise (use --resplit to re-split such a corpus by speaker).
Each directory is validated before it replaces an older one, so it is never
half-written.

Example:
  python -m espnet_adapters.bin.prepare_corpus --corpus commonvoice \\
      --root /data/cv-corpus-17.0-2024-03-15 --lang pa --data_dir data
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.corpora import CORPORA, PrepOptions
from espnet_adapters.data.prepare import IV_TEXTS, MLS_LIMITED, prepare_corpus
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--corpus", required=True, choices=CORPORA, help="corpus to prepare")
    parser.add_argument("--root", type=Path, required=True, help="corpus root (the db.sh variable)")
    parser.add_argument("--lang", required=True, help="our language code (hi, it, pa, te, ...)")
    parser.add_argument("--data_dir", type=Path, default=Path("data"), help="where the data dirs go")
    parser.add_argument("--splits", nargs="+", default=None, help="splits to write (default: all the corpus has)")
    parser.add_argument("--min_dur", type=float, default=0.1, help="skip shorter utterances (s)")
    parser.add_argument("--max_dur", type=float, default=30.0, help="skip longer utterances (s)")
    parser.add_argument("--cv_min_votes", type=int, default=0, help="Common Voice: keep up_votes - down_votes >= this")
    parser.add_argument("--mls_limited", default="", choices=MLS_LIMITED, help="MLS: train on a limited_supervision subset")
    parser.add_argument("--iv_text", default="normalized", choices=IV_TEXTS, help="IndicVoices transcript")
    parser.add_argument(
        "--resplit", default="",
        help="pool the corpus's train/dev/test and re-split by speaker, e.g. 'train:0.8,dev:0.1,test:0.1'",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of --resplit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def run(args: argparse.Namespace) -> None:
    options = PrepOptions(
        min_dur=args.min_dur, max_dur=args.max_dur, cv_min_votes=args.cv_min_votes,
        mls_limited=args.mls_limited, iv_text=args.iv_text,
    )
    prepare_corpus(args.corpus, args.root, args.lang, args.data_dir, splits=args.splits, options=options,
                   resplit=args.resplit, seed=args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
