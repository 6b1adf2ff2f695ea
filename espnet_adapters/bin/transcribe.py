#!/usr/bin/env python3
"""Transcribe audio files or folders with the language adapters, routed by the project's LID.

  python -m espnet_adapters.bin.transcribe --adapters exp/whisper_base_export_r32_qv_dec \\
      --out_dir transcripts recordings/ talk.mp3

Inputs: files (any format ffmpeg or libsndfile reads: wav, flac, mp3, m4a, opus ...;
any sample rate, any number of channels: resampled to 16 kHz mono) and folders
(searched recursively for .wav .flac .mp3 .m4a .opus .ogg .webm).  Recordings
longer than 30 s are cut into windows of at most --window_seconds, each cut at the
quietest 0.1 s of the last --search_seconds before the limit (a pause, when there
is one); each window is one segment of the outputs.

Adapters: --adapters DIR, a folder written by export_adapters (stage 14), whose
manifest's checksums are verified, and which brings the LID, the threshold chosen
on dev and the decoding options; or --adapter LANG=DIR (repeated) with --lid_dir.

Routing per window (espnet_adapters.whisper.routing): --route hard (the LID's
argmax language's adapter), soft (all adapters, their LoRA deltas mixed by the
LID posteriors), threshold (hard when the top posterior >= --tau, else the top_k
mixed; default tau: the export's, chosen on dev), hierarchical (the language family
first, then the language within it; the export's families), base (no adapter,
Whisper's own language detection); --lang X forces X's adapter (no LID needed).

Writes, per input, OUT_DIR/NAME.{txt,json,srt,vtt} (--formats; NAME: the file's
stem, or its path below a folder given as input), each atomically; the JSON has
per segment the times, the decoding language, the LID's language probabilities and
the adapter weights, and the LID's sliding-window posteriors over the recording
(espnet_adapters/transcribe/formats.py).  A file that cannot be read is reported
by name and skipped; the others are still transcribed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import torch

from espnet_adapters.transcribe.audio import find_audio
from espnet_adapters.transcribe.engine import transcribe_files
from espnet_adapters.transcribe.formats import OUTPUT_FORMATS, write_transcript
from espnet_adapters.transcribe.options import add_transcriber_arguments, transcriber_from_args
from espnet_adapters.utils.cli import make_parser, run_main

logger = logging.getLogger(__name__)


def formats_arg(text: str) -> list[str]:
    """``--formats json,srt``."""
    kinds = [kind for kind in text.split(",") if kind]
    unknown = [kind for kind in kinds if kind not in OUTPUT_FORMATS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(OUTPUT_FORMATS)}")
    return kinds


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("inputs", nargs="+", type=Path, help="Audio files and folders.")
    parser.add_argument("--out_dir", type=Path, default=Path("transcripts"), help="Where the outputs go.")
    parser.add_argument("--formats", type=formats_arg, default=list(OUTPUT_FORMATS), metavar="txt,json,srt,vtt",
                        help="Output files per input, comma-separated.")
    add_transcriber_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load once, transcribe every file, report the failures."""
    torch.set_num_threads(args.num_threads)
    files = find_audio(args.inputs)
    transcriber = transcriber_from_args(args)
    failures = transcribe_files(transcriber, [(item.path, item.name) for item in files],
                                lambda name, transcript: write_transcript(args.out_dir, name, transcript, args.formats))
    done = len(files) - len(failures)
    logger.info("transcribed %d of %d files into %s (route %s)", done, len(files), args.out_dir,
                transcriber.routing.name)
    if failures:
        logger.error("%d file(s) failed:", len(failures))
        for path, message in failures:
            logger.error("  %s", message if str(path) in message else f"{path}: {message}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.transcribe --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
