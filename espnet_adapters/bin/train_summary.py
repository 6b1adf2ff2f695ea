#!/usr/bin/env python3
"""Training runs side by side (a lever study): dev WER / CER / words correct of the base (step 0)
and of the installed adapter, the best step, trainable parameters and training time, and the dev
curve of each run, as Markdown tables on stdout.

  python3 -m espnet_adapters.bin.train_summary exp/whisper_base_lora_*_r32_qv_dec
  python3 -m espnet_adapters.bin.train_summary --metric dev_cer exp/*/train_stats.json

Each argument is an adapter experiment dir (``exp/<model>_lora_<lang>_<tag>``) or its
``train_stats.json``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from espnet_adapters.train.summary import curves_table, plot_scaling, read_run, runs_table, scaling_table
from espnet_adapters.utils.cli import make_parser, run_main

METRICS = ("dev_wer", "dev_cer", "dev_corr", "dev_loss")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="Adapter experiment dirs or their train_stats.json.")
    parser.add_argument("--metric", choices=METRICS, action="append",
                        help="Curve(s) to print (repeatable); default: dev_wer and dev_cer.")
    parser.add_argument("--heading", default="", help="A Markdown heading printed first (e.g. for RESULTS.md).")
    parser.add_argument("--scaling_plot", type=Path, default=None, metavar="PNG",
                        help="Also draw dev WER / CER / words correct against training utterances, per language "
                             "(runs that differ in data only), and print its table.")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="Also link each run's curves.png, relative to this dir (where the Markdown goes).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Print the tables."""
    runs = [read_run(path) for path in args.runs]
    if args.heading:
        print(f"{args.heading}\n")
    print("\n".join(runs_table(runs)))
    for metric in args.metric or ["dev_wer", "dev_cer"]:
        print(f"\n{metric} by step (0 = base model)\n")
        print("\n".join(curves_table(runs, metric)))
    if args.scaling_plot is not None:
        print("\nData scaling (installed adapter on dev: WER / CER / words correct)\n")
        print("\n".join(scaling_table(runs)))
        plot_scaling(runs, args.scaling_plot)
        print(f"\n![data scaling]({os.path.relpath(args.scaling_plot, args.link_dir or Path.cwd())})")
    if args.link_dir is not None:
        print("\nLearning curves (train/dev loss; dev WER, CER, words correct; step 0 = base model):\n")
        for path in args.runs:
            png = (path if path.is_dir() else path.parent) / "curves.png"
            if png.is_file():
                print(f"![{png.parent.name}]({os.path.relpath(png, args.link_dir)})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.train_summary --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
