#!/usr/bin/env python3
"""Run the frozen Whisper encoder once over one job's features and store the outputs.

Writes into ``--out_dir`` (a cache directory shared by all jobs):
  shard.<JOB>.safetensors  (1500, d_model) float16 per utterance, keyed by utterance id
                           (written to a temporary name and renamed when complete)
  fingerprint.json         base model + features fingerprint; every job writes the same
                           one, and a different one already there is an error (a stale
                           cache: delete the directory)

With ``--encoder_top N`` (an adapter on the top N encoder layers) the states
below those layers are stored instead of the outputs.  With ``--encoder_span
speech`` the encoder runs on each utterance's speech + ``--encoder_trim``
seconds (its duration from ``--data_dir``'s utt2dur, else its features: the
decoders' rule) instead of the 30 s window, and each entry holds only those
frames (``espnet_adapters/whisper/inputs.py``).
The recipe runs this as ``run.pl JOB=1:N ... --shard JOB``, every job with the
whole set's ``--feats_scp`` and its own ``--keys``.  Only the encoder runs,
under ``torch.inference_mode``; decoder-only LoRA training and decoding then
read the outputs through ``espnet_adapters.whisper.encoder_cache.EncoderCache``.

``--backend ct2`` runs CTranslate2's encoder instead, on a float32 export of the
base model (``export_adapter`` without an adapter, ``--ct2_dir``, checked against
``--whisper_model``): the same outputs within ~1e-3 (less than the float16
rounding of the cache), 1.33x faster per utterance on this project's CPU
(``bench/encoder_cache.py``, README).  The states below the top layers
(``--encoder_top``) need transformers.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.whisper.encoder_cache import (
    claim_cache_dir, encode_batches, encoder_fingerprint, shard_path, torch_encode, write_shard,
)
from espnet_adapters.whisper.ct2_decode import cache_encode, cache_encoder_name, open_ct2_whisper
from espnet_adapters.train.data import utterance_seconds
from espnet_adapters.whisper.encoder import ENCODER_SPANS, cut_layer_below_top
from espnet_adapters.whisper.inputs import encode_speech, speech_frames
from espnet_adapters.whisper.features import iter_feats_scp, job_keys, stack_features
from espnet_adapters.whisper.model import load_whisper, pick_device

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--feats_scp", type=Path, required=True, help="The whole set's feats.scp (dump_feats).")
    parser.add_argument("--keys", type=Path, default=None, help="This job's utterances (first column).")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument("--out_dir", type=Path, required=True, help="The cache directory.")
    parser.add_argument("--shard", type=int, required=True, help="Job number: writes shard.<JOB>.safetensors.")
    parser.add_argument("--batch_size", type=int, default=8, help="Utterances per encoder call.")
    parser.add_argument(
        "--encoder_top", type=int, default=0,
        help="0: the encoder's outputs; N: the hidden states below the top N layers (encoder_top of conf/lora).",
    )
    parser.add_argument("--backend", choices=("hf", "ct2"), default="hf",
                        help="hf: transformers' encoder; ct2: CTranslate2's, on --ct2_dir (whole encoder only).")
    parser.add_argument("--ct2_dir", type=Path, default=None,
                        help="--backend ct2: export_adapter's ct2_float32 dir of the base model.")
    parser.add_argument("--encoder_span", choices=ENCODER_SPANS, default="window",
                        help="window: Whisper's 30 s window; speech: each utterance's speech + --encoder_trim.")
    parser.add_argument("--encoder_trim", type=float, default=None,
                        help="--encoder_span speech: seconds after the speech the encoder runs on (the decode config's).")
    parser.add_argument("--data_dir", type=Path, default=None,
                        help="--encoder_span speech: the set's data dir, whose utt2dur gives the durations.")
    parser.add_argument("--ngpu", type=int, default=0, help="0 runs on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads of this job.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Fingerprint, claim the cache dir, encode, write the shard."""
    torch.set_num_threads(args.num_threads)
    keys = job_keys(args.keys, read_map(args.feats_scp), args.feats_scp)
    if (args.ct2_dir is not None) != (args.backend == "ct2"):
        raise UserInputError("--ct2_dir goes with --backend ct2, and only with it")
    if args.backend == "ct2" and args.encoder_top:
        raise UserInputError(f"--encoder_top {args.encoder_top}: the states below the top layers need --backend hf "
                             "(CTranslate2 runs the whole encoder)")
    model, _ = load_whisper(args.whisper_model, pick_device(args.ngpu))
    try:
        cut_layer = cut_layer_below_top(args.encoder_top, model.config.encoder_layers)
    except ValueError as err:
        raise UserInputError(f"--{err}") from err
    speech = args.encoder_span == "speech"
    if speech and (args.encoder_trim is None or args.encoder_trim < 0 or args.backend != "hf" or args.data_dir is None):
        raise UserInputError("--encoder_span speech needs --encoder_trim SECONDS (>= 0), --data_dir and --backend hf")
    if not speech and args.encoder_trim is not None:
        raise UserInputError("--encoder_trim goes with --encoder_span speech (a window cache holds all 1500 frames)")
    encoder_name = None  # transformers
    if args.backend == "ct2":
        ct2 = open_ct2_whisper(args.ct2_dir, args.whisper_model, ngpu=args.ngpu, num_threads=args.num_threads,
                               compute_type="float32")
        encode, encoder_name = cache_encode(ct2), cache_encoder_name(ct2)
    else:
        encode = torch_encode(model.get_encoder(), cut_layer)
    margin = args.encoder_trim if speech else None
    fingerprint = encoder_fingerprint(args.whisper_model, args.feats_scp, cut_layer, margin)
    claim_cache_dir(args.out_dir, fingerprint, args.whisper_model, cut_layer, encoder_name, margin)
    d_model = model.config.d_model
    shapes = [(model.config.max_source_positions, d_model)] * len(keys)
    if speech:
        seconds = utterance_seconds(args.data_dir, args.feats_scp, keys)
        frames = dict(zip(keys, speech_frames([seconds[utt] for utt in keys], margin)))
        shapes = [(frames[utt], d_model) for utt in keys]
    start = time.perf_counter()
    with tqdm(total=len(keys), desc=f"encode {args.feats_scp.parent.name}", mininterval=10) as progress:
        items = iter_feats_scp(args.feats_scp, keys)
        outputs = (speech_batches(model.get_encoder(), frames, cut_layer, items, args.batch_size, progress) if speech
                   else encode_batches(encode, items, args.batch_size, progress))
        write_shard(shard_path(args.out_dir, args.shard), outputs, keys, shapes, fingerprint)
    wall = time.perf_counter() - start
    logger.info(
        "%s: %d utterances in %.1f s (%.2f s each, %s, %s), %.2f MB each on average",
        shard_path(args.out_dir, args.shard), len(keys), wall, wall / max(len(keys), 1), args.backend,
        args.encoder_span, sum(rows for rows, _ in shapes) * d_model * 2 / 1e6 / max(len(keys), 1),
    )


def speech_batches(
    encoder: torch.nn.Module, frames: dict[str, int], cut_layer: int | None, items: Iterator[tuple[str, np.ndarray]],
    batch_size: int, progress: tqdm,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(utt, its own frames' outputs)`` for ``--encoder_span speech``, batch by batch (each utterance alone)."""
    parameter = next(encoder.parameters())
    while batch := list(itertools.islice(items, batch_size)):
        counts = [frames[utt] for utt, _ in batch]
        features = stack_features([feats for _, feats in batch]).to(parameter.device, parameter.dtype)
        with torch.inference_mode():
            hidden = encode_speech(encoder, counts, features=features, cut_layer=cut_layer).to("cpu")
        progress.update(len(batch))
        yield from ((utt, row[:count]) for (utt, _), row, count in zip(batch, hidden, counts))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.cache_encoder --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
