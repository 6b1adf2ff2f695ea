"""Stage 1 on real corpora: prepare, mix and pool the corpora of one language.

Reads the corpora of --lang listed in a data config (``conf/data/<lang>.yaml``) or
one corpus (--corpus), from the roots exported by ``db.sh``, and writes:

  data/<corpus>_<lang>_{train,dev,test}  each corpus on its own (bin/prepare_corpus)
  data/<lang>_train   train splits mixed with the config's weights; utterances whose
                      normalised sentence occurs in any dev or test set are dropped
  data/<lang>_dev     dev splits mixed with the same weights (checkpoint selection),
                      minus sentences of the test sets
  data/<lang>_test    every test split pooled (plus the `extra_test` corpora), with
                      utt2category naming each utterance's source: stage 8 scores the
                      pooled set and each source on its own

Every directory has a ``stats.json`` (utterances, speakers, hours; per source for the
mixtures).  Data config keys:

  corpora:          {corpus: weight, ...}   corpora of train/dev/test
  extra_test:       [corpus, ...]           test-only corpora (FLEURS)
  num_train_utts:   null | N                size of the train mixture (null: largest possible)
  num_dev_utts:     null | N                size of the dev mixture
  prepare_options:  {option: value}         options of bin/prepare_corpus (iv_text, mls_limited, ...)

Example (db.sh sets KATHBATH and COMMONVOICE):
  . ./db.sh; python -m espnet_adapters.bin.prepare_lang --lang hi --config conf/data/hi.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.corpora import CORPORA
from espnet_adapters.data.prepare import load_data_config, prepare_language
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--lang", required=True, help="our language code (hi, it, pa, te, ...)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="data config, e.g. conf/data/hi.yaml")
    source.add_argument("--corpus", choices=CORPORA, help="a single corpus instead of a config")
    parser.add_argument("--data_dir", type=Path, default=Path("data"), help="where the data dirs go")
    parser.add_argument(
        "--splits", nargs="+", default=["train", "dev", "test"], choices=("train", "dev", "test"),
        help="our splits to write; an evaluation-only language needs only test",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the mixture sampling")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return parser


def run(args: argparse.Namespace) -> None:
    if args.config is not None:
        config = load_data_config(args.config)
    else:
        config = {"corpora": {args.corpus: 1.0}, "extra_test": [], "prepare_options": {}}
    prepare_language(args.lang, args.data_dir, config, args.splits, args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
