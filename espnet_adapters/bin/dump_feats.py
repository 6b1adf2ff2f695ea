#!/usr/bin/env python3
"""Dump one job's share of a data dir as trimmed Whisper log-mel features.

Writes, atomically, into ``--out_dir``:
  feats.ark    float32 (frames, n_mels) matrices, only the frames that see the
               signal plus one padding frame (espnet_adapters/whisper/features.py);
               ``pad_logmel`` restores the extractor's 30 s matrix bit for bit
  feats.scp    ``utt <abs path>/feats.ark:offset``
  feats_shape  ``utt frames,n_mels``

The recipe runs one of these per ``--nj`` job and concatenates the scps and
shapes.  Only the feature extractor of ``--whisper_model`` is loaded (n_mels is
80 up to large-v2, 128 for large-v3), never its weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.whisper.features import dump_features


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp (dump/raw/<set>).")
    parser.add_argument("--keys", type=Path, default=None, help="Dump only these utterances (first column).")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Job output dir (replaced atomically).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Compute and store the features of every utterance of the job (whisper.features.dump_features)."""
    dump_features(args.data_dir, args.keys, args.whisper_model, args.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.dump_feats --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
