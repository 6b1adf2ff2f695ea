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
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.corpora import CORPORA, PrepOptions, get_corpus
from espnet_adapters.data.corpora.common import SkipLog, Utterance, check_no_speaker_leak, filter_duration, write_split
from espnet_adapters.data.corpora.splits import parse_fractions, resplit_by_speaker
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)

# Splits that must be speaker-disjoint; extras (test_known) overlap train by design.
DISJOINT_SPLITS = ("train", "dev", "test")


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
    parser.add_argument("--mls_limited", default="", choices=("", "1h", "9h"), help="MLS: train on a limited_supervision subset")
    parser.add_argument("--iv_text", default="normalized", choices=("normalized", "verbatim"), help="IndicVoices transcript")
    parser.add_argument(
        "--resplit", default="",
        help="pool the corpus's train/dev/test and re-split by speaker, e.g. 'train:0.8,dev:0.1,test:0.1'",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of --resplit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def run(args: argparse.Namespace) -> None:
    corpus = get_corpus(args.corpus)
    if not args.root.is_dir():
        raise UserInputError(f"{corpus.DB_VAR}={args.root}: not a directory (set it in db.sh)")
    options = PrepOptions(
        min_dur=args.min_dur, max_dur=args.max_dur, cv_min_votes=args.cv_min_votes,
        mls_limited=args.mls_limited, iv_text=args.iv_text,
    )
    available = corpus.splits(options)
    wanted = args.splits or list(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise UserInputError(f"{corpus.NAME} has no split {', '.join(unknown)} (it has: {', '.join(available)})")

    prepared: dict[str, list[Utterance]] = {}
    to_read = sorted(set(wanted) | (set(DISJOINT_SPLITS) & set(available) if args.resplit else set()))
    for split in to_read:
        skips = SkipLog()
        utts = corpus.prepare(args.root, args.lang, split, skips, options)
        utts = filter_duration(utts, options.min_dur, options.max_dur, skips)
        logger.info("%s %s %s: %d utterances kept, %s", corpus.NAME, args.lang, split, len(utts), skips.summary())
        skips.check(len(utts), f"{corpus.NAME} {args.lang} {split} under {args.root}")
        prepared[split] = utts
    if args.resplit:
        pooled = [u for s in DISJOINT_SPLITS if s in prepared for u in prepared.pop(s)]
        prepared.update(resplit_by_speaker(pooled, parse_fractions(args.resplit), seed=args.seed))
    check_no_speaker_leak({s: prepared[s] for s in DISJOINT_SPLITS if s in prepared})
    for split in wanted:
        if split not in prepared:
            raise UserInputError(f"--resplit {args.resplit!r} does not define split {split}")
        write_split(args.data_dir / f"{corpus.NAME}_{args.lang}_{split}", prepared[split], category=corpus.NAME)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
