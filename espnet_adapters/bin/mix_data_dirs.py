"""Mix prepared data dirs of one language by weights, or pool them, into one data dir.

Sources are Kaldi dirs written by prepare_corpus (wav.scp text utt2spk utt2lang
utt2dur, optional spk2gender and segments).  Output in --out_dir:

  wav.scp text utt2spk spk2utt utt2lang utt2dur utt2category [spk2gender] [segments]
  stats.json   utterances, speakers, hours; per source: dir, weight, available,
               dropped_shared_text, utterances, speakers, hours; seed

utt2category holds the source name of each utterance, so a pooled test set can
still be scored per source.

Weights (--weight NAME=W, any positive scale) are the share of *utterances* each
source contributes.  By default the mix is as large as every source can supply at
these shares (floor(min available / share)); --num_utts asks for a size, and one
a source cannot supply is an error naming it.  Per-source counts are within one
utterance of share x total, and which utterances are taken is a seeded sample
(--seed).  Without any --weight every utterance of every source is taken (pooling,
e.g. test sets of several corpora).

--exclude_text_of DIR (repeatable) drops source utterances whose sentence, after
the scoring normaliser, is in DIR's text: a training mix then never contains a
sentence of the test sets it is evaluated on.  Drops are counted per source in the
log and in stats.json, and happen before the counts are computed.

When some sources have segments and others not, the unsegmented utterances get
whole-recording segments [0, utt2dur] (Kaldi allows segments for all utterances
or none).

Example (80 % Kathbath, 20 % Common Voice, no sentence of the test sets):
  python -m espnet_adapters.bin.mix_data_dirs \\
      --source kathbath=data/kathbath_hi_train --weight kathbath=0.8 \\
      --source commonvoice=data/commonvoice_hi_train --weight commonvoice=0.2 \\
      --exclude_text_of data/kathbath_hi_test --exclude_text_of data/commonvoice_hi_test \\
      --out_dir data/mix_hi_train
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.corpora.mix import mix_data_dirs
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--source", action="append", required=True, metavar="NAME=DIR",
        help="a source data dir and its name (utt2category); repeat per source",
    )
    parser.add_argument(
        "--weight", action="append", default=[], metavar="NAME=W",
        help="weight of source NAME; give one per source, or none to take every utterance",
    )
    parser.add_argument(
        "--num_utts", type=int, default=None,
        help="utterances in the mix (None: the largest all sources can supply)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the per-source sampling")
    parser.add_argument(
        "--exclude_text_of", action="append", type=Path, default=[], metavar="DIR",
        help="drop utterances whose normalised text is in DIR/text; repeatable",
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="the mixed data dir (replaced atomically)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def _pairs(values: list[str], option: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict; names must be unique, non-empty and without whitespace."""
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name or not value or name.split() != [name]:
            raise UserInputError(f"{option} {item!r}: expected NAME=VALUE")
        if name in pairs:
            raise UserInputError(f"{option}: {name!r} given twice")
        pairs[name] = value
    return pairs


def _weights(values: list[str]) -> dict[str, float] | None:
    weights = {}
    for name, value in _pairs(values, "--weight").items():
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserInputError(f"--weight {name}={value}: not a number") from None
    return weights or None


def run(args: argparse.Namespace) -> None:
    sources = {name: Path(path) for name, path in _pairs(args.source, "--source").items()}
    for name, path in sources.items():
        if not path.is_dir():
            raise UserInputError(f"--source {name}={path}: not a directory")
    weights = _weights(args.weight)
    if args.num_utts is not None and weights is None:
        raise UserInputError("--num_utts needs --weight for every source (without weights every utterance is taken)")
    mix_data_dirs(sources, weights, args.out_dir, args.num_utts, args.seed, held_out=args.exclude_text_of)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
