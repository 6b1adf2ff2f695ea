#!/usr/bin/env python3
"""Evaluate a trained LID model (train_lid) on test sets, beside two baselines.

Test sets are ``DATA_DIR:FEATS_DIR:CACHE_DIR`` as for train_lid, pooled into
one set (every language's test set: a confusion matrix needs them all).
Every language of ``utt2lang`` must be a LID label.  Systems compared:
  lid       the trained model on the cached encoder outputs' valid frames
  whisper   Whisper's own language detection: one decoder step from
            <|startoftranscript|> on the same cached outputs, softmax over the
            LID's labels only (``--whisper_baseline false`` skips it)
  majority  always the most frequent training language (from lid.json)
and, for lid and whisper, short crops: the first N seconds of each
utterance's trimmed log-mel (``--crop_seconds``, default 1 2 3), padded to
Whisper's 30 s window and run through the base encoder, which is the CPU cost
of this program (one encoder pass per utterance and crop length, batched).
Utterances no longer than N s are used whole; results.json counts the cropped ones.

Writes into ``--out_dir``:
  posteriors          ``utt hi:0.9100 it:0.0200 pa:...``: LID posteriors of every label,
                      in lid.json's label order (Kaldi text, sorted by utterance)
  whisper_posteriors  the same for the Whisper baseline
  results.json        {n, labels, test_sets, lid_dir, base_model,
                       systems: {lid|whisper|majority: {n, accuracy, macro_f1,
                       per_label: {label: {precision, recall, f1, support}},
                       confusion: {labels, counts}}},
                       crops: {"1s"|"2s"|"3s"|"full": {n_cropped, lid: {accuracy, macro_f1},
                       whisper: {accuracy, macro_f1}}}}
  confusion.png       annotated count matrices (reference rows, predicted columns), lid and whisper
  confusion.md        the same as markdown tables, with totals and recall per language
  timing.json         LID classifier milliseconds per utterance on cached encoder outputs
                      (batch 1 median/mean and batched), cache read time, and the Whisper
                      baseline's decoder step, measured on up to 200 test utterances
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from espnet_adapters.lid.data import parse_set_spec
from espnet_adapters.lid.evaluate import EvalOptions, evaluate_lid
from espnet_adapters.utils.cli import make_parser, run_main, str2bool
from espnet_adapters.whisper.model import pick_device


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--lid_dir", type=Path, required=True, help="train_lid's output (lid.json).")
    parser.add_argument("--test_sets", type=parse_set_spec, nargs="+", required=True,
                        help="DATA_DIR:FEATS_DIR:CACHE_DIR; several are pooled.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Directory for the outputs listed above.")
    parser.add_argument("--whisper_model", default=None,
                        help="Base model (encoder for crops, Whisper baseline); default: lid.json's base_model.")
    parser.add_argument("--crop_seconds", type=float, nargs="*", default=list(EvalOptions.crop_seconds),
                        help="Crop lengths; none given: no crops (and no encoder run).")
    parser.add_argument("--whisper_baseline", type=str2bool, default=EvalOptions.whisper_baseline,
                        help="Also score Whisper's own LID.")
    parser.add_argument("--batch_size", type=int, default=EvalOptions.batch_size,
                        help="Utterances per encoder/decoder call.")
    parser.add_argument("--ngpu", type=int, default=0, help="0 runs on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Evaluate, then write the outputs (espnet_adapters.lid.evaluate)."""
    torch.set_num_threads(args.num_threads)
    options = EvalOptions(tuple(args.crop_seconds), args.whisper_baseline, args.batch_size)
    evaluate_lid(args.lid_dir, args.test_sets, args.out_dir, pick_device(args.ngpu), options, args.whisper_model)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.eval_lid --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
