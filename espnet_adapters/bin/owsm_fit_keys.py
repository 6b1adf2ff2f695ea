#!/usr/bin/env python3
"""Key file of the utterances of an S2T dir that fit the model's window (ESPnet shape-file format).

  python -m espnet_adapters.bin.owsm_fit_keys --config exp/owsm_..._lora_hi_r32/train.yaml \\
      --out exp/owsm_..._lora_hi_r32/train_keys dump/owsm/hi_train

ESPnet's S2T preprocessor pads every utterance to ``preprocessor_conf.speech_length``
seconds and silently cuts longer ones while keeping their whole transcript, so an
utterance longer than the window would teach the model text it cannot hear.  ESPnet's
s2t.sh drops them by duration before training; this does the same for our stages:
OUT lists the fitting utterances as ``key duration`` lines (given to s2t_train as
``--train_shape_file``/``--valid_shape_file``, which decide the utterances it iterates)
and the log says how many were dropped.  Keeping none is an error.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi import write_map
from espnet_adapters.owsm.data import fitting_keys, model_window
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("s2t_dir", type=Path, help="S2T data dir with utt2dur (stage 4's dump/owsm/<set>).")
    parser.add_argument("--config", type=Path, required=True,
                        help="The model's (or a training run's) config.yaml: its preprocessor_conf.speech_length.")
    parser.add_argument("--out", type=Path, required=True, help="Key file to write.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Filter utt2dur by the window, write the key file."""
    utt2dur = args.s2t_dir / "utt2dur"
    if not utt2dur.is_file():
        raise UserInputError(f"{args.s2t_dir}: no utt2dur (stage 3 writes it)")
    window = model_window(args.config)
    fit, longer = fitting_keys(utt2dur, window)
    if not fit:
        raise UserInputError(f"{utt2dur}: no utterance fits the model's {window:g} s window ({args.config})")
    write_map(args.out, fit)
    if longer:
        worst = max(longer, key=longer.__getitem__)
        logger.warning("%s: %d of %d utterances are longer than the model's %g s window and are left out "
                       "(longest: %s, %.2f s)", args.s2t_dir, len(longer), len(fit) + len(longer), window,
                       worst, longer[worst])
    logger.info("%s: %d utterances -> %s", args.s2t_dir, len(fit), args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
