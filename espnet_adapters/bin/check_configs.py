#!/usr/bin/env python3
"""Load the recipe's config files through their dataclasses, before any stage runs.

adapt.sh calls this once: a config that does not parse, names an unknown key,
has a value of the wrong type or out of range, or is empty, is an error naming
the file (exit 1), not a traceback in stage 6 or a silent default.  With
``--lora_fields KEY ...`` it prints the LoRA config's values of those keys (its
defaults where the file is silent), one ``KEY=VALUE`` line each, for the stage
scripts (``where``, ``encoder_top``), and with ``--decode_fields KEY ...`` the
decode config's (``encoder_span``, ``encoder_trim``); with ``--synth_other_config``, the line
``other_langs=...`` (the languages the other synthesizer speaks).  With
``--whisper_model`` and ``--langs``, every language must have a language token in
that Whisper model (``--langs Hindi`` or ``--langs xx`` stops here, not in stage 7).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.augment import AugmentConfig
from espnet_adapters.data.families import read_families
from espnet_adapters.publish.licences import data_licences
from espnet_adapters.data.synth import other_languages
from espnet_adapters.lid.config import LidConfig
from espnet_adapters.train.trainer import TrainConfig
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.lora import LoraSpec
from espnet_adapters.whisper.model import unknown_languages


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--lora_config", type=Path, help="conf/lora/*.yaml (LoraSpec).")
    parser.add_argument("--train_config", type=Path, help="conf/train/*.yaml (TrainConfig).")
    parser.add_argument("--decode_config", type=Path, help="conf/decode/*.yaml (DecodeOptions).")
    parser.add_argument("--lid_config", type=Path, help="conf/lid/*.yaml (LidConfig).")
    parser.add_argument("--augment_config", type=Path, help="conf/augment/*.yaml (AugmentConfig).")
    parser.add_argument("--synth_other_config", type=Path,
                        help="conf/synth_other.yaml: print other_langs=<the languages it has voices for>.")
    parser.add_argument("--families", type=Path, help="conf/families.yaml (language -> family).")
    parser.add_argument("--licences", type=Path,
                        help="conf/export/data_licences.yaml: must have --corpus's licence for every --langs.")
    parser.add_argument("--corpus", default=None, help="With --licences: the recipe's corpus.")
    parser.add_argument("--whisper_model", default=None, help="With --langs: the Whisper model that must know them.")
    parser.add_argument("--langs", nargs="*", default=[], help="Language codes the recipe trains or evaluates.")
    parser.add_argument("--lora_fields", nargs="*", default=[], metavar="KEY",
                        help="Print these keys of the LoRA config as KEY=VALUE lines.")
    parser.add_argument("--decode_fields", nargs="*", default=[], metavar="KEY",
                        help="Print these keys of the decode config as KEY=VALUE lines (none: none).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Load every config given; print the LoRA fields asked for."""
    loaders = (("lora_config", LoraSpec), ("train_config", TrainConfig), ("decode_config", DecodeOptions),
               ("lid_config", LidConfig), ("augment_config", AugmentConfig))
    loaded = {}
    for flag, cls in loaders:
        path = getattr(args, flag)
        if path is None:
            continue
        if not path.is_file():
            raise UserInputError(f"--{flag} {path}: no such file")
        loaded[flag] = cls.from_yaml(path)
    if args.families is not None:
        read_families(args.families)
    if args.licences is not None:
        if args.corpus is None:
            raise UserInputError("--licences needs --corpus")
        for lang in args.langs:
            data_licences(args.licences, args.corpus, lang)
    if args.whisper_model is not None and args.langs:
        unknown = unknown_languages(args.whisper_model, args.langs)
        if unknown:
            raise UserInputError(f"--langs: {' '.join(unknown)}: {args.whisper_model} has no language token for "
                                 f"{'it' if len(unknown) == 1 else 'them'} (Whisper's codes: hi, it, pa, te, en, ...)")
    if args.synth_other_config is not None:
        print(f"other_langs={' '.join(other_languages(args.synth_other_config))}")
    for flag, config in (("lora_fields", "lora_config"), ("decode_fields", "decode_config")):
        keys = getattr(args, flag)
        if not keys:
            continue
        if config not in loaded:
            raise UserInputError(f"--{flag} needs --{config}")
        values = loaded[config].as_dict()
        for key in keys:
            if key not in values:
                raise UserInputError(f"--{flag} {key}: not a key of --{config} ({', '.join(values)})")
            value = values[key]
            print(f"{key}={'none' if value is None else value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.check_configs --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
