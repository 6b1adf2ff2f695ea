#!/usr/bin/env python3
"""Synthesize the default multilingual corpus for one language into Kaldi data dirs.

Writes ``<data_dir>/<lang>_{train,dev,test}`` (wav.scp text utt2spk spk2utt utt2lang
utt2dur spk2gender), validated, and the audio (espeak-ng's 22.05 kHz PCM with low
background noise) under ``<audio_dir>/<speaker>/``.  The recipe's format stage
resamples to 16 kHz like any other corpus.

Train, dev and test have disjoint speakers (``split:`` of each speaker in the
config) and disjoint sentences (lines equal after scoring normalisation count once; the sentence file is shuffled with ``--seed`` and
cut into test, dev, train in that order, so the test set does not change when
``--train_utts`` grows).  Each sentence is spoken once, by one of its split's
speakers in turn.

``dev_other`` / ``test_other``: the sentences of dev / test spoken by another synthesizer
(Festival's diphone voices, ``--other_config``), with speaker ids of their own: whether an
adapter trained on espeak-ng speech recognises the language rather than espeak-ng.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi import write_data_dir
from espnet_adapters.data.synth import (
    OTHER_SPLITS,
    SPLITS,
    load_other_config,
    load_synth_config,
    plan_corpus,
    plan_other,
    read_sentences,
    synthesize_all,
)
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options; see the module docstring for what they mean together."""
    parser = make_parser(__doc__)
    parser.add_argument("--lang", required=True, help="Language code (a key of `voices` in the config).")
    parser.add_argument("--sentences", type=Path, required=True, help="One sentence per line, UTF-8.")
    parser.add_argument("--config", type=Path, default=Path("conf/synth.yaml"), help="Voices and speakers.")
    parser.add_argument("--other_config", type=Path, default=Path("conf/synth_other.yaml"),
                        help="The other synthesizer's voices and speakers (splits dev_other, test_other).")
    parser.add_argument("--data_dir", type=Path, default=Path("data"), help="Where the Kaldi dirs go.")
    parser.add_argument("--audio_dir", type=Path, default=Path("downloads/synth"), help="Where wav files go.")
    parser.add_argument("--train_utts", type=int, default=240, help="Utterances in the training set.")
    parser.add_argument("--dev_utts", type=int, default=24, help="Utterances in the dev set.")
    parser.add_argument("--test_utts", type=int, default=40, help="Utterances in the test set.")
    parser.add_argument(
        "--splits", nargs="+", choices=SPLITS + OTHER_SPLITS, default=list(SPLITS),
        help="Splits to write; e.g. only test for a language that is evaluated but not trained on; "
        "dev_other/test_other: the dev/test sentences by the other synthesizer.",
    )
    parser.add_argument("--seed", type=int, default=1, help="Seed of the sentence shuffle.")
    parser.add_argument("--nj", type=int, default=2, help="Parallel espeak-ng processes.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Plan, synthesize and write the three data dirs of one language."""
    config = load_synth_config(args.config)
    if args.lang not in config.voices:
        raise UserInputError(f"{args.config}: no espeak-ng voice for language {args.lang!r} under `voices`")
    sentences = read_sentences(args.sentences)
    sizes = {"train": args.train_utts, "dev": args.dev_utts, "test": args.test_utts}
    wanted = {split.removesuffix("_other") for split in args.splits}
    sizes = {split: (size if split in wanted else 0) for split, size in sizes.items()}
    audio_dir = (args.audio_dir / args.lang).resolve()
    voice = config.voices[args.lang]
    plan: dict[str, list] = plan_corpus(args.lang, sentences, config.speakers, sizes, audio_dir, args.seed,
                                        voice=voice, noise_dbfs=config.noise_dbfs)
    if set(args.splits) & set(OTHER_SPLITS):
        others = load_other_config(args.other_config, args.lang)
        clash = {speaker.name for speaker in others} & {speaker.name for speaker in config.speakers}
        if clash:
            raise UserInputError(f"{args.other_config}: speaker names {sorted(clash)} are used in {args.config} too")
        for split in OTHER_SPLITS:
            plan[split] = plan_other(args.lang, plan[split.removesuffix("_other")], others, audio_dir,
                                     config.noise_dbfs)
    for split in args.splits:
        utts = plan[split]
        durations = synthesize_all(utts, voice, config.noise_dbfs, args.nj)
        out = args.data_dir / f"{args.lang}_{split}"
        write_data_dir(
            out,
            wav_scp={utt.utt_id: str(utt.wav_path) for utt in utts},
            text={utt.utt_id: utt.text for utt in utts},
            utt2spk={utt.utt_id: utt.spk_id for utt in utts},
            utt2lang={utt.utt_id: args.lang for utt in utts},
            utt2dur={utt.utt_id: f"{durations[utt.utt_id]:.3f}" for utt in utts},
            spk2gender={utt.spk_id: utt.speaker.gender for utt in utts},
        )
        hours = sum(durations.values()) / 3600
        speakers = len({utt.spk_id for utt in utts})
        logger.info("%s: %d utterances, %d speakers, %.2f h", out, len(utts), speakers, hours)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.synth_corpus --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
