#!/usr/bin/env python3
"""Pack a trained OWSM-style model exactly like a released one (espnet2.bin.pack s2t).

  python -m espnet_adapters.bin.owsm_pack --exp_dir exp/owsm_tiny/train --model_file valid.acc.ave.pth \
      --out exp/owsm_tiny/owsm_tiny.zip

Run from the recipe dir: the exp dir's config.yaml refers to the BPE model and the
feature statistics by recipe-relative paths, and they are packed under those names
(meta.yaml, config.yaml, weights, bpe.model, feats_stats.npz), so espnet_model_zoo
unpacks it like any OWSM and the LoRA stages use it unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import yaml

from espnet_adapters.owsm.build import pack_model
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True, help="ESPnet training output dir (config.yaml).")
    parser.add_argument("--model_file", default="valid.acc.ave.pth", help="Weights inside --exp_dir.")
    parser.add_argument("--out", type=Path, required=True, help="The zip to write (atomically).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Pack."""
    config = args.exp_dir / "config.yaml"
    if not config.is_file() or not (args.exp_dir / args.model_file).is_file():
        raise UserInputError(f"{args.exp_dir}: no config.yaml or {args.model_file}: has the training finished?")
    values = yaml.safe_load(config.read_text(encoding="utf-8"))
    extra = [Path(values["bpemodel"]), Path(values["normalize_conf"]["stats_file"])]
    pack_model(Path("."), config, args.exp_dir / args.model_file, extra, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
