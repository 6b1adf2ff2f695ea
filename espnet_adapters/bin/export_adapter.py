#!/usr/bin/env python3
"""Merge a peft LoRA adapter into its base Whisper and export it for CTranslate2.

Writes ``--out_dir`` (espnet_adapters/whisper/export.py), built under a
temporary name and renamed when complete:
  manifest.json        base model name and sha256 (config + weights), adapter
                       sha256 (config, weights, lora_meta.json), quantizations, versions
  transformers/        the merged model, a plain transformers directory
  ct2_<quantization>/  the merged model in CTranslate2 format: decode it with
                       ``whisper_decode --decode_backend ct2 --ct2_dir OUT/ct2_<quantization>``
  adapter/             the adapter's adapter_config.json and lora_meta.json

Without ``--adapter_dir`` the base model itself is exported.  A re-run with the
same base and adapter content does nothing (the manifest's signature); another
``--quantization`` is added to a current export without merging again; another
base or a changed adapter rebuilds the export.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.whisper.export import QUANTIZATIONS, export_adapter


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--whisper_model", default="whisper-base", help="Base model: short name, local dir or Hub id.")
    parser.add_argument("--adapter_dir", type=Path, default=None, help="A peft LoRA adapter on --whisper_model.")
    parser.add_argument("--out_dir", type=Path, required=True, help="The export directory (listed above).")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="int8",
                        help="CTranslate2 weight type of ct2_<quantization>/.")
    parser.add_argument("--force", action="store_true", help="Rebuild even if the export is up to date.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads for the merge.")
    parser.add_argument("--verbose", "-v", action="count", default=0, help="Debug logging.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Export (or find up to date) and log where the CTranslate2 model is."""
    import torch

    torch.set_num_threads(args.num_threads)
    export_adapter(args.whisper_model, args.adapter_dir, args.out_dir, args.quantization, force=args.force)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.export_adapter --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
