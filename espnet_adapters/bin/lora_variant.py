#!/usr/bin/env python3
"""Write a LoRA config at other ranks with the same scaling alpha/r (adapt.sh --lora_ranks).

The rank rule is ``LoraSpec.at_rank`` (espnet_adapters.whisper.lora): r 32, alpha 64 at
rank 8 gives alpha 16; a rank at which alpha would be fractional is an error.  Each
variant is --lora_config with ``r`` and ``lora_alpha`` replaced (every other key as
written there), under a header line naming its source; written atomically.

  python3 -m espnet_adapters.bin.lora_variant --lora_config conf/lora/r32_qv_dec.yaml \\
      8=exp/conf/lora/r8_qv_dec.yaml 16=exp/conf/lora/r16_qv_dec.yaml
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import yaml

from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.lora import LoraSpec


def variant(value: str) -> tuple[int, Path]:
    """``RANK=OUT`` as (rank, path)."""
    rank, sep, out = value.partition("=")
    if not sep or not out or not rank.isdigit():
        raise argparse.ArgumentTypeError(f"expected RANK=OUT (e.g. 8=exp/conf/lora/r8.yaml), got {value!r}")
    return int(rank), Path(out)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--lora_config", required=True,
                        help="The LoRA config (conf/lora/*.yaml) to derive from; named in each variant's header.")
    parser.add_argument("variants", nargs="+", type=variant, metavar="RANK=OUT",
                        help="A rank and the yaml to write for it.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Derive and write every variant."""
    spec = LoraSpec.from_yaml(args.lora_config)
    with open(args.lora_config, encoding="utf-8") as handle:
        written = yaml.safe_load(handle) or {}
    for rank, out in args.variants:
        derived = spec.at_rank(rank)
        values = {**written, "r": derived.r, "lora_alpha": derived.lora_alpha}
        with atomic_write(out) as handle:
            handle.write(f"# {args.lora_config} at rank {rank} (--lora_ranks)\n")
            handle.write(yaml.safe_dump(values, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.lora_variant --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
