#!/usr/bin/env python3
"""Add noisy / reverberant copies of a training data dir (stage 2, ``--augment_config``).

For each utterance the output has the original and ``copies`` augmented copies whose ids
and speakers are prefixed ``aug<k>-``; each copy draws (seeded by the utterance id and the
config's seed) a reverberation with probability ``reverb_prob`` and a noise colour and SNR
(``conf/augment/*.yaml``, :class:`espnet_adapters.data.augment.AugmentConfig`).  As with
speed perturbation, only the data dir is written: the copies' ``wav.scp`` entries are
pipes through ``sox reverb`` and ``espnet_adapters.bin.add_noise``, decoded by the format
stage.  ``<out_dir>/utt2aug`` says what each copy got.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.augment import AugmentConfig, augmented_entry, plan_copy
from espnet_adapters.data.kaldi_dirs import CopyMaker, copy_data_dir
from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", type=Path, required=True, help="Source Kaldi data dir.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Augmented data dir (replaced atomically).")
    parser.add_argument("--augment_config", type=Path, required=True, help="conf/augment/*.yaml (AugmentConfig).")
    return parser


def run(args: argparse.Namespace) -> None:
    """The original plus ``copies`` augmented copies of every utterance."""
    config = AugmentConfig.from_yaml(args.augment_config)
    described: dict[str, str] = {}

    def maker(copy: int) -> CopyMaker:
        def make(utt: str, entry: str, dur: float | None) -> tuple[str, float | None]:
            spec = plan_copy(config, utt, copy)
            described[f"aug{copy}-{utt}"] = spec.describe()
            return augmented_entry(entry, spec), dur
        return make

    copies: dict[str, CopyMaker | None] = {"": None}
    copies.update({f"aug{copy}-": maker(copy) for copy in range(1, config.copies + 1)})
    count = copy_data_dir(args.in_dir, args.out_dir, copies)
    with atomic_write(args.out_dir / "utt2aug") as handle:
        handle.writelines(f"{utt} {what}\n" for utt, what in sorted(described.items()))
    logger.info("%s: %d utterances (the originals and %d copies each: %d reverberated, %d with noise)",
                args.out_dir, count, config.copies, sum("reverb" in what for what in described.values()),
                sum("dB" in what for what in described.values()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.augment_data_dir --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
