#!/usr/bin/env python3
"""Decode a Kaldi data dir (or one job's share of it) with a Whisper model.

Writes, atomically, into ``--out_dir``:
  hyp         Kaldi text file: ``utt hypothesis`` (an empty hypothesis is just ``utt``)
  hyp_lang    ``utt lang``: the language decoded in (forced, or Whisper's detection)
  stats.json  utterances, audio seconds, wall seconds, real-time factor, options

The recipe's decode stage runs one of these per ``--nj`` job through
``${decode_cmd}`` and merges the hyps; run alone it decodes a whole dir.
``--whisper_model`` is the offline ``whisper-base`` by default, or a local
transformers dir, or a Hub id such as ``openai/whisper-small`` (with
HF_HUB_OFFLINE=0).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper.decode import SAMPLE_RATE, DecodeOptions, decode_batch, iter_batches
from espnet_adapters.whisper.model import load_whisper, pick_device

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp and utt2lang.")
    parser.add_argument("--keys", type=Path, default=None, help="Decode only these utterances (first column).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where hyp, hyp_lang, stats.json go.")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument("--beam_size", type=int, default=1, help="1 = greedy search.")
    parser.add_argument("--batch_size", type=int, default=8, help="Utterances per generate() call.")
    parser.add_argument("--max_new_tokens", type=int, default=224, help="Cap on generated tokens per utterance.")
    parser.add_argument(
        "--lang_mode", choices=("forced", "auto"), default="forced",
        help="forced: language token from utt2lang; auto: Whisper detects the language.",
    )
    parser.add_argument("--ngpu", type=int, default=0, help="0 decodes on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads of this job.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Load the audio and the model, decode in batches, write the outputs."""
    torch.set_num_threads(args.num_threads)
    wav_scp = read_map_lines(args.data_dir / "wav.scp")
    keys = list(read_map(args.keys, allow_empty_value=True)) if args.keys else list(wav_scp)
    utt2lang_path = args.data_dir / "utt2lang"
    if args.lang_mode == "forced" and not utt2lang_path.exists():
        raise UserInputError(f"{utt2lang_path}: missing; it is needed to force the language (or use --lang_mode auto)")
    utt2lang = read_map(utt2lang_path) if utt2lang_path.exists() else {}
    opts = DecodeOptions(args.beam_size, args.batch_size, args.max_new_tokens, args.lang_mode)
    model, processor = load_whisper(args.whisper_model, pick_device(args.ngpu))
    items = []
    for utt in keys:
        if utt not in wav_scp:
            raise UserInputError(f"{args.keys}: utterance {utt} is not in {args.data_dir / 'wav.scp'}")
        lineno, entry = wav_scp[utt]
        audio = read_audio(entry, SAMPLE_RATE, f"{args.data_dir / 'wav.scp'}:{lineno}")
        items.append((utt, audio, utt2lang.get(utt, "")))
    audio_seconds = sum(len(audio) for _, audio, _ in items) / SAMPLE_RATE
    start = time.perf_counter()
    hyps = []
    with tqdm(total=len(items), desc=f"decode {args.data_dir.name}", mininterval=10) as progress:
        for batch in iter_batches(items, opts):
            hyps.extend(decode_batch(model, processor, batch, opts))
            progress.update(len(batch))
    wall = time.perf_counter() - start
    stats = {
        "utterances": len(hyps),
        "audio_seconds": round(audio_seconds, 2),
        "decode_seconds": round(wall, 2),
        "rtf": round(wall / audio_seconds, 4) if audio_seconds else None,
        "whisper_model": args.whisper_model,
        "options": vars(opts),
        "device": str(model.device),
        "num_threads": args.num_threads,
    }
    with atomic_dir(args.out_dir) as tmp:
        write_map(tmp / "hyp", {hyp.utt_id: hyp.text for hyp in hyps})
        write_map(tmp / "hyp_lang", {hyp.utt_id: hyp.lang for hyp in hyps})
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    logger.info("decoded %d utterances (%.1f s of audio) in %.1f s", len(hyps), audio_seconds, wall)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.whisper_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
