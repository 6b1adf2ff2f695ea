#!/usr/bin/env python3
"""BPE model and token list of a new OWSM-style model (the tiny offline OWSM), OWSM's way.

  python -m espnet_adapters.bin.owsm_tokens --vocab_size 2000 --out_dir exp/owsm_tiny/token_list \
      dump/owsm/hi_train/text.ctc dump/owsm/it_train/text.ctc

Writes OUT_DIR/bpe.model (sentencepiece unigram; the special tokens <na>, <nospeech>,
the ISO 639-3 language tokens, <asr>, <notimestamps> and the timestamps <0.00> ...
<30.00> are user-defined symbols) and OUT_DIR/tokens.txt (<blank> <unk>, the pieces,
<sos> <eos> <sop>).  Fine-tuning a released OWSM never calls this: its own token list
and BPE model are reused unchanged.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.owsm.tokens import train_bpe, write_token_list
from espnet_adapters.utils.cli import make_parser, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("texts", type=Path, nargs="+", help="Kaldi text files of plain transcripts (text.ctc).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where bpe.model and tokens.txt go.")
    parser.add_argument("--vocab_size", type=int, default=2000, help="sentencepiece vocabulary incl. special tokens.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Train the BPE model, write the token list."""
    texts = [line for path in args.texts for line in read_map(path, allow_empty_value=True).values()]
    tokens = train_bpe(texts, args.out_dir / "bpe.model", args.vocab_size)
    write_token_list(tokens, args.out_dir / "tokens.txt")
    logger.info("%s: %d tokens from %d transcripts", args.out_dir, len(tokens), len(texts))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
