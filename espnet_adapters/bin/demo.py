#!/usr/bin/env python3
"""The live routing demo: a web page where one uploads or records audio and sees the routing.

  python -m espnet_adapters.bin.demo --adapters exp/whisper_base_export_r32_qv_dec [--port 8000]
  (or ./demo.sh from a recipe dir after ./run.sh: it finds the export of stage 14)

Open http://127.0.0.1:8000/ : choose a file (or record with the microphone), pick a
routing (threshold, soft, hard, or one adapter forced) and press Transcribe.  The
page shows the routed transcript beside the base model's, the LID's language
probabilities over time with the adapter weights of each window (a plot), and a
table of the segments.  Everything runs locally and offline: the server is
Python's http.server (espnet_adapters/demo/server.py), the page has no external
resources.  Adapters, LID, routing and search options: as for transcribe.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import torch

from espnet_adapters.demo.server import serve
from espnet_adapters.transcribe.options import add_transcriber_arguments, transcriber_from_args
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: every one).")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one, logged).")
    add_transcriber_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    """Load the adapters once, then serve."""
    torch.set_num_threads(args.num_threads)
    serve(transcriber_from_args(args), args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.demo --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
