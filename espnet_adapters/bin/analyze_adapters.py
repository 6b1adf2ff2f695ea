#!/usr/bin/env python3
"""Analyse the weights of language adapters of one LoRA preset: similarity and spectra.

Loads the base Whisper with every ``--adapter LANG=DIR`` (as routing does: the same modules
adapted, ranks may differ) and writes to --out_dir, atomically:

  analysis.json    per language pair: cosine of the deltas over the whole adapter, mean per
                   group of modules, cosine of the A matrices (shared initialisation); with
                   --families, the pairs within a language family vs across families; per
                   language: |ΔW|_F, singular values and effective ranks (entropy, energy 90%)
                   per module (espnet_adapters.analysis.weights)
  analysis.md      the "## Adapter analysis: weights" section (appended to RESULTS.md by the recipe)
  similarity.png   heatmap of the whole-adapter cosine and a dendrogram (3+ languages)
  spectra.png      normalised singular values per language, effective rank per module

  python -m espnet_adapters.bin.analyze_adapters --whisper_model tools/models/whisper-base \\
      --adapter hi=exp/whisper_base_lora_hi_r32_qv_dec/adapter \\
      --adapter pa=exp/whisper_base_lora_pa_r32_qv_dec/adapter --out_dir exp/whisper_base_analysis_r32_qv_dec
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Sequence

from espnet_adapters.analysis.report import SIMILARITY_PNG, SPECTRA_PNG, plot_similarity, plot_spectra, render_markdown
from espnet_adapters.analysis.weights import analyse, family_summary, load_adapter_weights
from espnet_adapters.data.families import read_families
from espnet_adapters.routing.decode import load_adapter_dirs, parse_adapter_arg
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--whisper_model", required=True, help="Base model: local dir or Hub id.")
    parser.add_argument("--adapter", type=parse_adapter_arg, action="append", required=True, metavar="LANG=DIR",
                        help="A language's LoRA adapter; repeat for every language.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where analysis.{json,md} and the PNGs go.")
    parser.add_argument("--families", type=Path, default=None,
                        help="conf/families.yaml: similarity within vs across language families.")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="Directory of the markdown that will include analysis.md (image links relative to it).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Load, analyse, write."""
    adapters = load_adapter_dirs(args.adapter)
    for lang, directory in adapters.items():
        if not (directory / "adapter_model.safetensors").is_file():
            raise UserInputError(f"{directory}: no adapter_model.safetensors (--adapter {lang}=)")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserInputError(f"{args.out_dir}: exists and is not a directory")
    families = read_families(args.families) if args.families is not None else None
    analysis = analyse(load_adapter_weights(args.whisper_model, adapters))
    summary = family_summary(analysis, families) if families is not None else None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    link_dir = args.link_dir if args.link_dir is not None else args.out_dir
    prefix = Path(os.path.relpath(args.out_dir, link_dir)).as_posix() + "/"
    plot_similarity(analysis, args.out_dir / SIMILARITY_PNG)
    plot_spectra(analysis, args.out_dir / SPECTRA_PNG)
    with atomic_write(args.out_dir / "analysis.json") as out:
        json.dump({"adapters": {lang: str(path) for lang, path in adapters.items()}, **analysis.to_json(),
                   **({"family_summary": summary.to_json()} if summary is not None else {})},
                  out, indent=1, ensure_ascii=False, allow_nan=False)
    with atomic_write(args.out_dir / "analysis.md") as out:
        out.write(render_markdown(analysis, {lang: str(path) for lang, path in adapters.items()}, prefix,
                                  summary, str(args.families)))
    ranked = sorted(analysis.whole.items(), key=lambda item: -item[1])
    logger.info("whole-adapter cosine, most similar first: %s",
                ", ".join(f"{pair} {value:.3f}" for pair, value in ranked))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.analyze_adapters --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
