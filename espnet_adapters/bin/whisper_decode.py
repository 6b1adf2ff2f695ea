#!/usr/bin/env python3
"""Decode a Kaldi data dir (or one job's share of it) with a Whisper model.

Inputs, one of: the audio of ``--data_dir/wav.scp`` (default), trimmed log-mel
features from dump_feats (``--feats_scp``), or the encoder outputs cached by
cache_encoder (``--encoder_cache``: only the decoder runs).  Audio becomes the
same trimmed features first, so all three decode identically up to the cache's
float16 rounding.  ``--adapter_dir`` applies a peft LoRA adapter, unmerged or
merged into the weights (``--merge_adapter true``).

Writes, atomically, into ``--out_dir``:
  hyp         Kaldi text file: ``utt hypothesis`` (an empty hypothesis is just ``utt``)
  hyp_lang    ``utt lang``: the language decoded in (forced, or Whisper's detection)
  stats.json  utterances, audio seconds, wall seconds, real-time factor, input,
              adapter, options

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

import numpy as np
import torch
from tqdm import tqdm
from transformers import WhisperFeatureExtractor

from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main, str2bool
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper.decode import DecodeOptions, Hypothesis, decode_features, detect_languages, iter_batches
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import iter_audio_logmel, iter_feats_scp, job_keys, stack_features
from espnet_adapters.whisper.model import adapter_touches_encoder, load_whisper, pick_device, resolve_model

logger = logging.getLogger(__name__)


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, outputs, search and resources: the options shared with ``route_decode``."""
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp and utt2lang.")
    parser.add_argument("--keys", type=Path, default=None, help="Decode only these utterances (first column).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument(
        "--feats_scp", type=Path, default=None,
        help="Trimmed features (dump_feats) instead of audio; with --encoder_cache, what the cache is checked against.",
    )
    parser.add_argument(
        "--encoder_cache", type=Path, default=None,
        help="Cached encoder outputs (cache_encoder) instead of audio; not with an adapter that changes the encoder.",
    )
    parser.add_argument("--beam_size", type=int, default=1, help="1 = greedy search.")
    parser.add_argument("--batch_size", type=int, default=8, help="Utterances per generate() call.")
    parser.add_argument("--max_new_tokens", type=int, default=224, help="Cap on generated tokens per utterance.")
    parser.add_argument("--ngpu", type=int, default=0, help="0 decodes on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads of this job.")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    add_decode_arguments(parser)
    parser.add_argument("--adapter_dir", type=Path, default=None, help="A peft LoRA adapter on --whisper_model.")
    parser.add_argument("--merge_adapter", type=str2bool, default=False, help="Merge the adapter into the weights.")
    parser.add_argument(
        "--lang_mode", choices=("forced", "auto"), default="forced",
        help="forced: language token from utt2lang; auto: Whisper detects the language.",
    )
    return parser


def load_payloads(
    args: argparse.Namespace, extractor: WhisperFeatureExtractor
) -> tuple[dict[str, np.ndarray | None], float | None]:
    """Trimmed features per utterance (``None`` with an encoder cache) and the audio seconds.

    Audio and dumped features take the same path from here on; the seconds come
    from the audio itself, or from ``utt2dur`` when only features are read.
    """
    if args.feats_scp is None and args.encoder_cache is None:
        items = list(iter_audio_logmel(args.data_dir, args.keys, extractor))
        return {utt: feats for utt, feats, _ in items}, sum(seconds for _, _, seconds in items)
    utt2dur_path = args.data_dir / "utt2dur"
    utt2dur = read_map(utt2dur_path) if utt2dur_path.exists() else {}
    if args.encoder_cache is None:
        keys = job_keys(args.keys, read_map(args.feats_scp), args.feats_scp)
        payloads: dict[str, np.ndarray | None] = dict(iter_feats_scp(args.feats_scp, keys))
    else:
        keys = job_keys(args.keys, read_map(args.data_dir / "wav.scp"), args.data_dir / "wav.scp")
        payloads = dict.fromkeys(keys)
    seconds = sum(float(utt2dur[utt]) for utt in keys) if utt2dur.keys() >= set(keys) else None
    return payloads, seconds


def open_cache(args: argparse.Namespace, keys: Sequence[str], adapter_dirs: Sequence[Path]) -> EncoderCache:
    """The encoder cache, checked against the model, the adapters and (with ``--feats_scp``) the features."""
    for adapter_dir in adapter_dirs:
        if adapter_touches_encoder(adapter_dir):
            raise UserInputError(
                f"{adapter_dir}: the adapter changes encoder weights, so cached encoder outputs"
                f" ({args.encoder_cache}) do not apply; decode from audio or --feats_scp"
            )
    expected = None if args.feats_scp is None else encoder_fingerprint(args.whisper_model, args.feats_scp)
    cache = EncoderCache(args.encoder_cache, expected)
    if cache.model != resolve_model(args.whisper_model):
        raise UserInputError(
            f"{args.encoder_cache}: computed with {cache.model}, not {resolve_model(args.whisper_model)};"
            f" re-run stage 4 / delete {args.encoder_cache}"
        )
    for utt in keys:
        if utt not in cache:
            raise UserInputError(f"{args.encoder_cache}: utterance {utt} is not cached (re-run stage 4)")
    return cache


def batch_inputs(
    batch: Sequence[tuple[str, np.ndarray | None, str]], cache: EncoderCache | None
) -> dict[str, torch.Tensor]:
    """The model input of a batch of :func:`iter_batches` items: stacked features, or cached encoder outputs."""
    if cache is None:
        return {"input_features": stack_features([feats for _, feats, _ in batch])}
    return {"encoder_outputs": cache.get_batch([utt for utt, _, _ in batch])}


def input_kind(args: argparse.Namespace) -> str:
    """What was decoded from, for stats.json."""
    return "encoder_cache" if args.encoder_cache is not None else "feats_scp" if args.feats_scp is not None else "audio"


def run(args: argparse.Namespace) -> None:
    """Load the inputs and the model, decode in batches, write the outputs."""
    torch.set_num_threads(args.num_threads)
    utt2lang_path = args.data_dir / "utt2lang"
    if args.lang_mode == "forced" and not utt2lang_path.exists():
        raise UserInputError(f"{utt2lang_path}: missing; it is needed to force the language (or use --lang_mode auto)")
    utt2lang = read_map(utt2lang_path) if utt2lang_path.exists() else {}
    opts = DecodeOptions(args.beam_size, args.batch_size, args.max_new_tokens, args.lang_mode)
    model, processor = load_whisper(args.whisper_model, pick_device(args.ngpu), args.adapter_dir, args.merge_adapter)
    payloads, audio_seconds = load_payloads(args, processor.feature_extractor)
    adapter_dirs = [] if args.adapter_dir is None else [args.adapter_dir]
    cache = open_cache(args, list(payloads), adapter_dirs) if args.encoder_cache is not None else None
    items = [(utt, feats, utt2lang.get(utt, "")) for utt, feats in payloads.items()]
    start = time.perf_counter()
    hyps: list[Hypothesis] = []
    with tqdm(total=len(items), desc=f"decode {args.data_dir.name}", mininterval=10) as progress:
        for batch in iter_batches(items, opts):
            utts = [utt for utt, _, _ in batch]
            inputs = batch_inputs(batch, cache)
            if opts.lang_mode == "forced":
                languages = [lang for _, _, lang in batch]
            else:
                languages = detect_languages(model, **inputs)
            texts = decode_features(model, processor.tokenizer, **inputs, languages=languages, opts=opts)
            hyps.extend(Hypothesis(*hyp) for hyp in zip(utts, texts, languages))
            progress.update(len(batch))
    wall = time.perf_counter() - start
    stats = {
        "utterances": len(hyps),
        "audio_seconds": None if audio_seconds is None else round(audio_seconds, 2),
        "decode_seconds": round(wall, 2),
        "rtf": round(wall / audio_seconds, 4) if audio_seconds else None,
        "whisper_model": args.whisper_model,
        "adapter_dir": None if args.adapter_dir is None else str(args.adapter_dir),
        "merge_adapter": args.merge_adapter,
        "input": input_kind(args),
        "options": vars(opts),
        "device": str(model.device),
        "num_threads": args.num_threads,
    }
    with atomic_dir(args.out_dir) as tmp:
        write_map(tmp / "hyp", {hyp.utt_id: hyp.text for hyp in hyps})
        write_map(tmp / "hyp_lang", {hyp.utt_id: hyp.lang for hyp in hyps})
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    logger.info("decoded %d utterances in %.1f s (%s)", len(hyps), wall, stats["input"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.whisper_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
