"""Stage 1 on real corpora: one corpus as data dirs, and a language's mixtures of them.

:func:`prepare_corpus` reads one corpus in the layout it is downloaded in and
writes ``<data_dir>/<corpus>_<lang>_<split>`` for every split asked for
(rows that cannot be used are skipped and counted; no speaker may appear in two
of train/dev/test).  :func:`prepare_language` does that for every corpus of a
data config (``conf/data/<lang>.yaml``, :func:`load_data_config`) and mixes
them into ``<lang>_{train,dev,test}``; the layout of what it writes is in
``python -m espnet_adapters.bin.prepare_lang --help``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from espnet_adapters.data.corpora import CORPORA, PrepOptions, get_corpus
from espnet_adapters.data.corpora.common import SkipLog, Utterance, check_no_speaker_leak, filter_duration, write_split
from espnet_adapters.data.corpora.mix import mix_data_dirs
from espnet_adapters.data.corpora.splits import parse_fractions, resplit_by_speaker
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import config_from_mapping

logger = logging.getLogger(__name__)

# Splits that must be speaker-disjoint; extras (test_known) overlap train by design.
DISJOINT_SPLITS = ("train", "dev", "test")
CONFIG_KEYS = {"corpora", "extra_test", "num_train_utts", "num_dev_utts", "prepare_options"}
# prepare_options: PrepOptions' fields, and the re-split by speaker
PREPARE_OPTIONS = {"min_dur", "max_dur", "cv_min_votes", "mls_limited", "iv_text", "resplit", "seed"}
MLS_LIMITED = ("", "1h", "9h")
IV_TEXTS = ("normalized", "verbatim")


# --------------------------------------------------------------------------- one corpus


def prepare_corpus(
    name: str, root: Path, lang: str, data_dir: Path, *, splits: Sequence[str] | None = None,
    options: PrepOptions = PrepOptions(), resplit: str = "", seed: int = 1,
) -> None:
    """Write ``data_dir/<name>_<lang>_<split>`` for ``splits`` (default: every split the corpus has).

    ``resplit`` (e.g. ``train:0.8,dev:0.1,test:0.1``) pools the corpus's train/dev/test and
    re-splits them by speaker, seeded by ``seed``.  Each dir is validated before it replaces an older one.
    """
    corpus = get_corpus(name)
    if not root.is_dir():
        raise UserInputError(f"{corpus.DB_VAR}={root}: not a directory (set it in db.sh)")
    available = corpus.splits(options)
    wanted = list(splits or available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise UserInputError(f"{corpus.NAME} has no split {', '.join(unknown)} (it has: {', '.join(available)})")

    prepared: dict[str, list[Utterance]] = {}
    to_read = sorted(set(wanted) | (set(DISJOINT_SPLITS) & set(available) if resplit else set()))
    for split in to_read:
        skips = SkipLog()
        utts = corpus.prepare(root, lang, split, skips, options)
        utts = filter_duration(utts, options.min_dur, options.max_dur, skips)
        logger.info("%s %s %s: %d utterances kept, %s", corpus.NAME, lang, split, len(utts), skips.summary())
        skips.check(len(utts), f"{corpus.NAME} {lang} {split} under {root}")
        prepared[split] = utts
    if resplit:
        pooled = [u for s in DISJOINT_SPLITS if s in prepared for u in prepared.pop(s)]
        prepared.update(resplit_by_speaker(pooled, parse_fractions(resplit), seed=seed))
    check_no_speaker_leak({s: prepared[s] for s in DISJOINT_SPLITS if s in prepared})
    for split in wanted:
        if split not in prepared:
            raise UserInputError(f"--resplit {resplit!r} does not define split {split}")
        write_split(data_dir / f"{corpus.NAME}_{lang}_{split}", prepared[split], category=corpus.NAME)


def corpus_root(name: str) -> Path:
    """The root of corpus ``name`` from its db.sh variable, or an error naming the variable."""
    var = get_corpus(name).DB_VAR
    value = os.environ.get(var, "")
    if not value:
        raise UserInputError(f"{var} is not set: point it at the {name} corpus in db.sh (see README, Real corpora)")
    if not Path(value).is_dir():
        raise UserInputError(f"{var}={value}: no such directory (set in db.sh or the environment)")
    return Path(value)


# --------------------------------------------------------------------------- a language


def load_data_config(path: Path) -> dict[str, Any]:
    """The data config, checked: unknown keys, unknown corpora and bad weights or options name the file."""
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
    for key in ("num_train_utts", "num_dev_utts"):
        size = config.get(key)
        if size is not None and (type(size) is not int or size < 1):
            raise UserInputError(f"{path}: {key} must be null or a positive integer, got {size!r}")
    options = config.get("prepare_options") or {}
    if not isinstance(options, dict) or set(options) - PREPARE_OPTIONS:
        raise UserInputError(f"{path}: prepare_options may only set {', '.join(sorted(PREPARE_OPTIONS))}")
    for name in [*corpora, *extra]:
        if name not in CORPORA:
            raise UserInputError(f"{path}: unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    _corpus_arguments(options, f"{path}: prepare_options")  # checked now, not after hours of preparation
    return {**config, "extra_test": extra, "prepare_options": options}


def _corpus_arguments(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A data config's ``prepare_options`` as :func:`prepare_corpus`'s keyword arguments, typed and checked."""
    prep = config_from_mapping(PrepOptions, {k: v for k, v in options.items() if k not in ("resplit", "seed")}, where)
    if prep.mls_limited not in MLS_LIMITED or prep.iv_text not in IV_TEXTS:
        raise UserInputError(f"{where}: mls_limited must be one of {MLS_LIMITED}, iv_text one of {IV_TEXTS}")
    resplit, seed = options.get("resplit", ""), options.get("seed", 1)
    if not isinstance(resplit, str) or type(seed) is not int:
        raise UserInputError(f"{where}: resplit must be a string like 'train:0.8,dev:0.1,test:0.1', seed an integer")
    return {"options": prep, "resplit": resplit, "seed": seed}


def prepare_language(
    lang: str, data_dir: Path, config: Mapping[str, Any], splits: Sequence[str], seed: int,
) -> None:
    """Prepare every corpus of ``config`` (:func:`load_data_config`) and write the mixtures ``<lang>_<split>``.

    The held-out sets of a mixture are prepared too, even when not asked for:
    their sentences are kept out of it.  ``seed`` seeds the mixture sampling.
    """
    corpora: dict[str, float] = {name: float(w) for name, w in config["corpora"].items()}
    extra = [name for name in config["extra_test"] if name not in corpora]
    roots = {name: corpus_root(name) for name in [*corpora, *extra]}  # all checked before hours of preparation
    arguments = _corpus_arguments(config["prepare_options"], "prepare_options")
    needed = set(splits)
    if "train" in needed:
        needed |= {"dev", "test"}
    if "dev" in needed:
        needed.add("test")
    for name in corpora:
        prepare_corpus(name, roots[name], lang, data_dir, splits=[s for s in DISJOINT_SPLITS if s in needed],
                       **arguments)
    for name in extra:
        prepare_corpus(name, roots[name], lang, data_dir, splits=["test"], **arguments)

    def sources(split: str, names: list[str]) -> dict[str, Path]:
        return {name: data_dir / f"{name}_{lang}_{split}" for name in names}

    tests = list(sources("test", [*corpora, *extra]).values())
    devs = list(sources("dev", list(corpora)).values())
    if "test" in splits:
        mix_data_dirs(sources("test", [*corpora, *extra]), None, data_dir / f"{lang}_test", None, seed)
    if "dev" in splits:
        mix_data_dirs(sources("dev", list(corpora)), corpora, data_dir / f"{lang}_dev", config.get("num_dev_utts"),
                      seed, held_out=tests)
    if "train" in splits:
        mix_data_dirs(sources("train", list(corpora)), corpora, data_dir / f"{lang}_train",
                      config.get("num_train_utts"), seed, held_out=[*devs, *tests])
