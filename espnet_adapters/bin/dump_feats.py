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
import logging
from pathlib import Path
from typing import Sequence

import kaldiio
from tqdm import tqdm

from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper.features import iter_audio_logmel
from espnet_adapters.whisper.model import load_feature_extractor

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp (dump/raw/<set>).")
    parser.add_argument("--keys", type=Path, default=None, help="Dump only these utterances (first column).")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Job output dir (replaced atomically).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Compute and store the features of every utterance of the job."""
    extractor = load_feature_extractor(args.whisper_model)
    shapes: dict[str, str] = {}
    seconds = 0.0
    with atomic_dir(args.out_dir) as tmp:
        ark, scp = tmp / "feats.ark", tmp / "feats.scp"
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            items = iter_audio_logmel(args.data_dir, args.keys, extractor)
            for utt, feats, duration in tqdm(items, desc=f"feats {args.data_dir.name}", mininterval=10):
                writer(utt, feats)
                shapes[utt] = f"{feats.shape[0]},{feats.shape[1]}"
                seconds += duration
        # The writer's scp holds the temp dir's path: point it at the final location.
        final_ark = str(args.out_dir.resolve() / "feats.ark")
        write_map(scp, {utt: value.replace(str(ark), final_ark) for utt, value in read_map(scp).items()})
        write_map(tmp / "feats_shape", shapes)
        size = ark.stat().st_size
    logger.info(
        "%s: %d utterances, %.1f s of audio, %.0f kB of features per utterance",
        args.out_dir, len(shapes), seconds, size / max(len(shapes), 1) / 1000,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.dump_feats --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
