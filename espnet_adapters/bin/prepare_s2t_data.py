#!/usr/bin/env python3
"""Make an OWSM speech-to-text data dir (ESPnet's S2T task) from one of our Kaldi data dirs.

Writes, next to copies of wav.scp, utt2spk, spk2utt (and utt2lang, utt2dur,
utt2category, segments, spk2gender when present):

  text       utt <hin><asr><notimestamps> the transcript   (decoder target)
  text.prev  utt <na>                                      (no previous-utterance prompt)
  text.ctc   utt the transcript                            (CTC target)

The language token is the ISO 639-3 code of the utterance's language (utt2lang,
or --lang for every utterance): hi -> <hin>, it -> <ita>, pa -> <pan>, te -> <tel>.
A language without a known code is an error that names it.  The output dir is
built beside its final place and swapped in whole.

  python -m espnet_adapters.bin.prepare_s2t_data --lang hi dump/raw/hi_train dump/owsm/hi_train
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.owsm.data import make_s2t_dir
from espnet_adapters.utils.cli import make_parser, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("src", type=Path, help="Kaldi data dir (validated first).")
    parser.add_argument("dst", type=Path, help="S2T data dir to write (replaced atomically).")
    parser.add_argument("--lang", default=None,
                        help="Language of every utterance when src has no utt2lang (checked against it when it has).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Write the S2T dir."""
    count = make_s2t_dir(args.src, args.dst, args.lang)
    logger.info("%s: %d utterances", args.dst, count)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
