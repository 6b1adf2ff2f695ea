#!/usr/bin/env python3
"""Write the ESPnet train config of a LoRA adapter on a pretrained OWSM.

  python -m espnet_adapters.bin.owsm_lora_config --owsm_model exp/owsm_tiny/owsm_tiny.zip \
      --lora_config conf/lora/r32_qv_dec.yaml --train_preset conf/owsm/lora_train.yaml \
      --out exp/owsm_tiny_lora_hi_r32_qv_dec/train.yaml --adapter_meta exp/.../adapter.yaml

The config is the pretrained model's own config.yaml (architecture, token list,
BPE model, frontend, normalization statistics unchanged) with the adapter
(use_adapter/adapter/adapter_conf from --lora_config, Whisper module names mapped
to ESPnet's), freeze_param on every base module, save_strategy adapter_only and
--train_preset's optimizer/batch/epoch settings; see
espnet_adapters/owsm/adapter_config.py.  It prints the number of LoRA parameters
the adapter has, which the training stage compares with what ESPnet trains.
--adapter_meta also writes the adapter.yaml that decoding reads (base model,
adapter_conf; the checkpoint name is given by --checkpoint).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import yaml

from espnet_adapters.owsm.adapter_config import lora_parameter_count, lora_train_config
from espnet_adapters.owsm.model import fetch_owsm
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.lora import LoraSpec

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--owsm_model", required=True, help="Pack zip, or Hub name (espnet/owsm_v3.1_ebf_base).")
    parser.add_argument("--owsm_cache", type=Path, default=Path("exp/owsm_cache"), help="espnet_model_zoo cache dir.")
    parser.add_argument("--lora_config", type=Path, required=True, help="conf/lora/*.yaml (the Whisper path's too).")
    parser.add_argument("--train_preset", type=Path, required=True, help="conf/owsm/lora_train.yaml or similar.")
    parser.add_argument("--out", type=Path, required=True, help="The train config to write.")
    parser.add_argument("--adapter_meta", type=Path, default=None, help="Also write this adapter.yaml.")
    parser.add_argument("--checkpoint", default="adapter.pth", help="Checkpoint file name in adapter.yaml.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Write the config (and adapter.yaml)."""
    model = fetch_owsm(args.owsm_model, args.owsm_cache)
    try:
        spec = LoraSpec.from_yaml(args.lora_config)
    except ValueError as err:
        raise UserInputError(f"{args.lora_config}: {err}") from err
    preset = yaml.safe_load(args.train_preset.read_text(encoding="utf-8")) or {}
    config = lora_train_config(model.load_config(), spec, preset)
    with atomic_write(args.out) as handle:
        yaml.safe_dump(config, handle, sort_keys=False, allow_unicode=True)
    count = lora_parameter_count(model.model_file, config["adapter_conf"])
    if args.adapter_meta is not None:
        meta = {"base_model": model.name, "base_model_file": str(model.model_file),
                "adapter_conf": config["adapter_conf"], "checkpoint": args.checkpoint,
                "lora_config": str(args.lora_config), "lora_parameters": count}
        with atomic_write(args.adapter_meta) as handle:
            yaml.safe_dump(meta, handle, sort_keys=False)
    logger.info("%s: %d LoRA parameters on %d modules", args.out, count, len(config["adapter_conf"]["target_modules"]))
    print(count)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
