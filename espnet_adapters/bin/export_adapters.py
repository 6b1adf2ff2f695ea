#!/usr/bin/env python3
"""Collect a run's language adapters into one folder with Hugging Face model cards (recipe stage 14).

  python -m espnet_adapters.bin.export_adapters --exp_dir exp --out_dir exp/whisper_base_export_r32_qv_dec \\
      --adapter hi=exp/whisper_base_lora_hi_r32_qv_dec/adapter --adapter it=... \\
      --lid_dir exp/whisper_base_lid_mlp_mean --routing_dir exp/whisper_base_routing_r32_qv_dec \\
      --whisper_model whisper-base --corpus synth --decode_config conf/decode/default.yaml

Each adapter's card (README.md) has the YAML metadata of the Hub (base model,
language, library peft, the training data's licence from --licences, a
model-index with the WER/CER of every scored test set of its language) and a
results table against the base model with paired bootstrap 95% intervals, read
from the scores.json of stage 8 under --exp_dir: the decodings made with the
search options given here (--decode_config and its flags, as stage 7 had them),
which are shipped as decoding.yaml.  peft's adapter_config.json is
copied with base_model_name_or_path set to the base's Hub id, so a folder can be
pushed to the Hub as it is.  manifest.json has the sha256 of every file; the whole
folder is written under a temporary name and renamed (layout:
espnet_adapters/publish/export.py).  ./transcribe.sh --adapters OUT_DIR reads it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.publish.export import export_adapters
from espnet_adapters.data.families import read_families
from espnet_adapters.routing.decode import load_adapter_dirs, parse_adapter_arg
from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.whisper.decode import add_search_arguments, decode_options

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True, help="The run's exp/ (scores of stage 8).")
    parser.add_argument("--out_dir", type=Path, required=True, help="The export folder (replaced).")
    parser.add_argument("--adapter", type=parse_adapter_arg, action="append", required=True, metavar="LANG=DIR",
                        help="A language's installed adapter dir (exp/<model>_lora_<lang>_<tag>/adapter); repeat.")
    parser.add_argument("--lid_dir", type=Path, default=None, help="The LID to ship with the adapters.")
    parser.add_argument("--routing_dir", type=Path, default=None,
                        help="Stage 10's routing dir: its tau_selection.json gives transcribe's default tau.")
    parser.add_argument("--top_k", type=int, default=2, help="Adapters mixed by threshold routing below tau.")
    parser.add_argument("--families", type=Path, default=None,
                        help="conf/families.yaml: the adapters' families, for hierarchical routing (languages "
                             "without one are left out; transcribe --route hierarchical then refuses).")
    parser.add_argument("--whisper_model", default="whisper-base", help="The base model the adapters were trained on.")
    parser.add_argument("--corpus", required=True, help="The recipe's --corpus (the cards' training data).")
    parser.add_argument("--licences", type=Path, default=Path("conf/export/data_licences.yaml"),
                        help="Training data licences per corpus and language.")
    parser.add_argument("--data_config_dir", type=Path, default=Path("conf/data"),
                        help="--corpus mix: where <lang>.yaml names the corpora.")
    add_search_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    """Export, then log what was written."""
    adapters = load_adapter_dirs(args.adapter)
    manifest = export_adapters(
        adapters, args.exp_dir, args.out_dir, whisper_model=args.whisper_model,
        corpus=args.corpus, licences=args.licences, decode_options=decode_options(args, "forced"),
        lid_dir=args.lid_dir, routing_dir=args.routing_dir, top_k=args.top_k, data_config_dir=args.data_config_dir,
        families=None if args.families is None else read_families(args.families))
    logger.info("exported %s to %s (LID: %s, tau: %s)", " ".join(manifest["adapters"]), args.out_dir,
                "yes" if manifest["lid"] else "no", (manifest["routing"] or {}).get("tau"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.export_adapters --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
