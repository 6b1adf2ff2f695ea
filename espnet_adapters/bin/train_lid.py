#!/usr/bin/env python3
"""Train a spoken language identifier on the frozen Whisper encoder's cached outputs.

Sets are given as ``DATA_DIR:FEATS_DIR:CACHE_DIR``, one per language (or any
mix), ``--train_sets`` and ``--dev_sets`` each taking several:
  DATA_DIR   Kaldi dir with ``utt2lang``: the labels (dump/raw/<lang>_train)
  FEATS_DIR  dump_feats output with ``feats.scp`` and ``feats_shape``
             (dump/<model>/<lang>_train): only the encoder frames that see the
             signal, ceil(frames / 2), are used
  CACHE_DIR  the encoder cache of those features (dump/<model>/encoder/<lang>_train),
             checked against them and ``--whisper_model`` through its fingerprint
The labels are the training languages, sorted.  The encoder never runs: the
recipe's cache (stage 5) is what decoder-only training reads too.

The model comes from ``--config conf/lid/<name>.yaml`` (mlp_mean, linear_mean,
mlp_attn, cnn): 1-D CNN or not, mean or attention pooling, linear or MLP, and
the training options.  Every epoch samples each language equally often; the
epoch with the best dev accuracy is kept.

Writes into ``--out_dir`` (``exp/<model>_lid_<tag>``, beside the adapters):
  lid_model.safetensors  the weights
  lid.json               labels (order of the outputs), config, d_model, base model,
                         dev accuracy and best epoch, majority training label and
                         label counts, the sets, the seed and the per-epoch history;
                         written last
  curves.png             train/dev loss and accuracy per epoch
The log (train.log in the recipe) has one line per epoch.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.data import SetSpec, open_sets, parse_set_spec
from espnet_adapters.lid.plots import plot_training
from espnet_adapters.lid.store import LID_META, save_lid
from espnet_adapters.lid.train import train_lid
from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.whisper.model import pick_device, resolve_model

logger = logging.getLogger(__name__)

SET_HELP = "DATA_DIR:FEATS_DIR:CACHE_DIR (see above); several are pooled"


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--train_sets", type=parse_set_spec, nargs="+", required=True, help=SET_HELP)
    parser.add_argument("--dev_sets", type=parse_set_spec, nargs="+", required=True, help=SET_HELP)
    parser.add_argument("--config", type=Path, default=Path("conf/lid/mlp_mean.yaml"), help="LID model + training.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Output dir (exp/<model>_lid_<tag>).")
    parser.add_argument("--whisper_model", default="whisper-base", help="The base model the caches were computed with.")
    parser.add_argument("--seed", type=int, default=1, help="Initialisation, sampling and dropout.")
    parser.add_argument("--ngpu", type=int, default=0, help="0 trains on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads.")
    return parser


def _set_names(specs: Sequence[SetSpec]) -> list[str]:
    return [":".join(str(part) for part in (spec.data_dir, spec.feats_dir, spec.cache_dir)) for spec in specs]


def run(args: argparse.Namespace) -> None:
    """Read the sets, train, select on dev, save."""
    torch.set_num_threads(args.num_threads)
    config = LidConfig.from_yaml(args.config)
    train = open_sets(args.train_sets, args.whisper_model)
    dev = open_sets(args.dev_sets, args.whisper_model)
    counts = Counter(train.langs)
    logger.info("train: %d utterances (%s); dev: %d; config %s",
                len(train.utts), ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), len(dev.utts), config)
    start = time.perf_counter()
    result = train_lid(config, train, dev, args.seed, pick_device(args.ngpu))
    seconds = time.perf_counter() - start
    d_model = train.frames[train.utts[0]].shape[1]
    meta = {
        "base_model": resolve_model(args.whisper_model),
        "dev_accuracy": result.dev_accuracy,
        "best_epoch": result.best_epoch,
        # most_common breaks ties by first occurrence; sorting first makes that the first label
        "majority_label": Counter(sorted(train.langs)).most_common(1)[0][0],
        "train_label_counts": dict(sorted(counts.items())),
        "train_sets": _set_names(args.train_sets),
        "dev_sets": _set_names(args.dev_sets),
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "history": result.history,
        "dev_calibration": result.calibration,
    }
    save_lid(args.out_dir, result.model, result.labels, d_model, meta)
    plot_training(result.history, result.best_epoch, args.out_dir / "curves.png", title=args.out_dir.name)
    logger.info("%s: dev accuracy %.3f at epoch %d of %d (%.1f s) -> %s", config.source, result.dev_accuracy,
                result.best_epoch, len(result.history), seconds, args.out_dir / LID_META)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.train_lid --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
