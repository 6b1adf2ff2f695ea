#!/usr/bin/env python3
"""Check an ESPnet LoRA training run and install its adapter for decoding.

  python -m espnet_adapters.bin.owsm_finish_adapter --exp_dir exp/owsm_tiny_lora_hi_r32_qv_dec \
      --train_log exp/log/train_cells/train.1.log

Reads <exp_dir>/adapter/adapter.yaml (written by owsm_lora_config) and the ESPnet
output dir <exp_dir>/espnet, then refuses, naming the file, when
  * the training log says ESPnet trained another number of parameters than the
    adapter's LoRA parameters (the base was not frozen, or targets did not match);
  * the selected checkpoint (--checkpoint, ESPnet's best by valid accuracy) holds
    anything but LoRA tensors, or not exactly that many.
Otherwise it copies the checkpoint to <exp_dir>/adapter/adapter.pth and writes
<exp_dir>/train_stats.json (trainable_params, the checkpoint it came from), which
RESULTS.md reads as for Whisper adapters.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Sequence

import torch
import yaml

from espnet_adapters.owsm.build import lora_state
from espnet_adapters.owsm.espnet_compat import prepare
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)
TRAINABLE = re.compile(r"Number of trainable parameters: (.+?) \(")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True, help="The adapter's experiment dir.")
    parser.add_argument("--train_log", type=Path, required=True, help="Log of the ESPnet training run.")
    parser.add_argument("--checkpoint", default="valid.acc.best.pth", help="Checkpoint in <exp_dir>/espnet.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Check, copy, record."""
    meta_file = args.exp_dir / "adapter" / "adapter.yaml"
    meta = yaml.safe_load(meta_file.read_text(encoding="utf-8"))
    expected = int(meta["lora_parameters"])
    prepare()
    from espnet2.torch_utils.model_summary import get_human_readable_count

    found = TRAINABLE.findall(args.train_log.read_text(encoding="utf-8", errors="replace"))
    if not found:
        raise UserInputError(f"{args.train_log}: no 'Number of trainable parameters' line: did ESPnet train?")
    if found[-1].strip() != get_human_readable_count(expected).strip():
        raise UserInputError(f"{args.train_log}: ESPnet trained {found[-1].strip()} parameters, the adapter has "
                             f"{expected} LoRA parameters ({meta_file}): the base model was not frozen")
    source = args.exp_dir / "espnet" / args.checkpoint
    if not source.is_file():
        raise UserInputError(f"{source}: missing: the training did not finish")
    state = torch.load(source, map_location="cpu", weights_only=True)
    lora = lora_state(state)
    count = sum(value.numel() for value in lora.values())
    if len(lora) != len(state) or count != expected:
        raise UserInputError(f"{source}: {len(state) - len(lora)} non-LoRA tensors and {count} LoRA parameters; "
                             f"expected an adapter_only checkpoint of {expected}")
    target = args.exp_dir / "adapter" / meta["checkpoint"]
    with source.open("rb") as checkpoint, atomic_write(target, "wb") as handle:
        shutil.copyfileobj(checkpoint, handle)
    with atomic_write(args.exp_dir / "train_stats.json") as handle:
        json.dump({"trainable_params": count, "checkpoint": str(source)}, handle, indent=2)
        handle.write("\n")
    logger.info("%s: %d LoRA parameters from %s", target, count, source)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
