#!/usr/bin/env python3
"""Add seeded coloured noise at an exact SNR to a wav on stdin; the noisy wav goes to stdout.

A filter for ``wav.scp`` pipes (stage 2's noise copies, ``espnet_adapters.data.augment``):
``sox -R in.wav -t wav - | python3 -m espnet_adapters.bin.add_noise --snr_db 10 --color pink --seed 7 |``.
The SNR is measured against the speech frames (within 40 dB of the loudest), the noise is
white, pink or brown Gaussian noise from ``--seed``, and the output keeps the input's sample
rate as 16-bit PCM.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Sequence

import soundfile as sf

from espnet_adapters.data.augment import NOISE_COLORS, add_noise
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--snr_db", type=float, required=True, help="Speech power over noise power, in dB.")
    parser.add_argument("--color", choices=sorted(NOISE_COLORS), required=True, help="Noise spectrum.")
    parser.add_argument("--seed", type=int, required=True, help="Noise seed.")
    return parser


def run(args: argparse.Namespace) -> None:
    """stdin wav -> stdout wav with noise."""
    data = sys.stdin.buffer.read()
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise UserInputError(f"stdin: not audio ({len(data)} bytes): {err}") from err
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    try:
        noisy = add_noise(audio, args.snr_db, args.color, args.seed)
    except ValueError as err:
        raise UserInputError(f"stdin: {err}") from err
    out = io.BytesIO()
    sf.write(out, noisy, rate, subtype="PCM_16", format="WAV")
    sys.stdout.buffer.write(out.getvalue())
    sys.stdout.buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.add_noise --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
