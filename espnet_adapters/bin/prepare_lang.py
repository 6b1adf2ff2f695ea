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
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from espnet_adapters.bin import mix_data_dirs, prepare_corpus
from espnet_adapters.data.corpora import CORPORA, get_corpus
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)

CONFIG_KEYS = {"corpora", "extra_test", "num_train_utts", "num_dev_utts", "prepare_options"}
PREPARE_OPTIONS = {"min_dur", "max_dur", "cv_min_votes", "mls_limited", "iv_text", "resplit", "seed"}


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


def load_config(path: Path) -> dict[str, Any]:
    """The data config, checked: unknown keys, unknown corpora and bad weights name the file."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise UserInputError(f"{path}: cannot read the data config ({err})") from err
    if not isinstance(config, dict):
        raise UserInputError(f"{path}: expected a mapping with the keys {', '.join(sorted(CONFIG_KEYS))}")
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise UserInputError(f"{path}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(CONFIG_KEYS))})")
    corpora = config.get("corpora")
    if not isinstance(corpora, dict) or not corpora:
        raise UserInputError(f"{path}: 'corpora' must map at least one corpus to its weight")
    for name, weight in corpora.items():
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise UserInputError(f"{path}: corpora.{name}: weight must be a positive number, got {weight!r}")
    extra = config.get("extra_test") or []
    if not isinstance(extra, list):
        raise UserInputError(f"{path}: 'extra_test' must be a list of corpora")
    options = config.get("prepare_options") or {}
    if not isinstance(options, dict) or set(options) - PREPARE_OPTIONS:
        raise UserInputError(f"{path}: prepare_options may only set {', '.join(sorted(PREPARE_OPTIONS))}")
    for name in [*corpora, *extra]:
        if name not in CORPORA:
            raise UserInputError(f"{path}: unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    return {**config, "extra_test": extra, "prepare_options": options}


def corpus_root(name: str) -> Path:
    """The root of corpus ``name`` from its db.sh variable, or an error naming the variable."""
    var = get_corpus(name).DB_VAR
    value = os.environ.get(var, "")
    if not value:
        raise UserInputError(f"{var} is not set: point it at the {name} corpus in db.sh (see README, Real corpora)")
    if not Path(value).is_dir():
        raise UserInputError(f"{var}={value}: no such directory (set in db.sh or the environment)")
    return Path(value)


def _call(entry: Any, argv: list[str], what: str) -> None:
    """Run another entry point in-process; its errors were logged by it, we name the step."""
    if entry.main(argv) != 0:
        raise UserInputError(f"{what} failed (see the error above)")


def _prepare(name: str, lang: str, splits: list[str], data_dir: Path, options: dict[str, Any]) -> None:
    argv = ["--corpus", name, "--root", str(corpus_root(name)), "--lang", lang,
            "--data_dir", str(data_dir), "--splits", *splits]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    _call(prepare_corpus, argv, f"preparing {name} ({lang})")


def _mix(out_dir: Path, sources: dict[str, Path], weights: dict[str, float] | None, num_utts: int | None,
         exclude: list[Path], seed: int) -> None:
    argv = ["--out_dir", str(out_dir), "--seed", str(seed)]
    for name, path in sources.items():
        argv += ["--source", f"{name}={path}"]
    for name, weight in (weights or {}).items():
        argv += ["--weight", f"{name}={weight}"]
    if num_utts is not None:
        argv += ["--num_utts", str(num_utts)]
    for path in exclude:
        argv += ["--exclude_text_of", str(path)]
    _call(mix_data_dirs, argv, f"writing {out_dir}")


def run(args: argparse.Namespace) -> None:
    if args.config is not None:
        config = load_config(args.config)
    else:
        config = {"corpora": {args.corpus: 1.0}, "extra_test": [], "prepare_options": {}}
    lang, data = args.lang, args.data_dir
    corpora: dict[str, float] = {name: float(w) for name, w in config["corpora"].items()}
    extra = [name for name in config["extra_test"] if name not in corpora]
    for name in [*corpora, *extra]:  # every root checked before hours of preparation start
        corpus_root(name)
    # The held-out sets of a mixture are read too: their sentences are kept out of it.
    needed = set(args.splits)
    if "train" in needed:
        needed |= {"dev", "test"}
    if "dev" in needed:
        needed.add("test")
    for name in corpora:
        _prepare(name, lang, [s for s in ("train", "dev", "test") if s in needed], data, config["prepare_options"])
    for name in extra:
        _prepare(name, lang, ["test"], data, config["prepare_options"])

    def sources(split: str, names: list[str]) -> dict[str, Path]:
        return {name: data / f"{name}_{lang}_{split}" for name in names}

    tests = list(sources("test", [*corpora, *extra]).values())
    devs = list(sources("dev", list(corpora)).values())
    if "test" in args.splits:
        _mix(data / f"{lang}_test", sources("test", [*corpora, *extra]), None, None, [], args.seed)
    if "dev" in args.splits:
        _mix(data / f"{lang}_dev", sources("dev", list(corpora)), corpora, config.get("num_dev_utts"),
             tests, args.seed)
    if "train" in args.splits:
        _mix(data / f"{lang}_train", sources("train", list(corpora)), corpora, config.get("num_train_utts"),
             [*devs, *tests], args.seed)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
