#!/usr/bin/env python3
"""Decode a Kaldi data dir (or one job's share of it) with a Whisper model.

Inputs, one of: the audio of ``--data_dir/wav.scp`` (default), trimmed log-mel
features from dump_feats (``--feats_scp``), or the encoder outputs cached by
cache_encoder (``--encoder_cache``: only the decoder runs).  Audio becomes the
same trimmed features first, so all three decode identically up to the cache's
float16 rounding.  ``--adapter_dir`` applies a peft LoRA adapter, unmerged or
merged into the weights (``--merge_adapter true``).

``--decode_backend ct2`` decodes with CTranslate2 instead of transformers:
``--ct2_dir`` is an export_adapter output's ``ct2_<quantization>`` dir (the
adapter merged in; refused unless exported from ``--whisper_model``, whose
feature extractor and tokenizer are used) or a CTranslate2 base model.  Audio
or ``--feats_scp`` only, the same search options and safeguards
(espnet_adapters/whisper/ct2_decode.py says where CTranslate2 differs), and
``--num_threads`` CTranslate2 threads.  stats.json records the backend
(``decode_backend``: ``ct2-<compute type>``; none with transformers), the
export and the compute type; the backend is one of the ``options_changed``,
so results tables show it as a decoding variant of its own.

Writes, atomically, into ``--out_dir``:
  hyp         Kaldi text file: ``utt hypothesis`` (an empty hypothesis is just ``utt``)
  hyp_lang    ``utt lang``: the language decoded in (forced, or Whisper's detection)
  stats.json  utterances, audio seconds, wall seconds, real-time factor, input,
              adapter, options, the safeguards' counts (``fallbacks``: decoded
              again at a higher temperature, ``fallbacks_unresolved``: above the
              compression-ratio threshold at every temperature, ``capped``:
              stopped by a token cap) and where the durations came from

The search: ``--decode_config conf/decode/<name>.yaml`` (default: none, i.e.
``conf/decode/default.yaml``'s values), each of its options overridden by its
flag when given (``--beam_size``, ``--batch_size``, ``--max_new_tokens``, the
safeguards, ``--encoder_trim``); ``--lang_mode`` is this decoder's own.
Safeguards against looping hypotheses (espnet_adapters/whisper/decode.py):
a per-utterance token cap from its duration (``--max_tokens_per_second``,
``--max_tokens_base``), a temperature fallback for hypotheses that compress too
well (``--compression_ratio_threshold``, ``--temperatures``, ``--seed``) and
n-gram blocking (``--no_repeat_ngram_size``).  ``--encoder_trim SECONDS``: the
decoder sees the encoder frames of each batch's longest utterance plus that
margin (espnet_adapters/whisper/inputs.py), as the adapter was trained (an
adapter whose lora_meta.json records another value is refused).  The
durations are ``utt2dur``'s, else the trimmed features' frames (10 ms each:
from the audio, ``--feats_scp``, or with ``--encoder_cache`` the
``feats_shape`` beside ``--feats_scp``), the same for the three inputs; an
utterance without any gets the flat cap only (and its batch the whole window).
A job decodes its utterances sorted by duration within each language.

The recipe's decode stage runs one of these per ``--nj`` job through
``${decode_cmd}`` and merges the hyps; run alone it decodes a whole dir.
``--whisper_model`` is the offline ``whisper-base`` by default, or a local
transformers dir, or a Hub id such as ``openai/whisper-small`` (with
HF_HUB_OFFLINE=0).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from espnet_adapters.decode_io import write_decode_outputs
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main, str2bool
from espnet_adapters.whisper.ct2_decode import decode_batch as ct2_decode_batch
from espnet_adapters.whisper.ct2_decode import open_ct2_whisper
from espnet_adapters.whisper.decode import (
    Hypothesis,
    add_search_arguments,
    decode_features,
    decode_options,
    detect_languages,
    forced_languages,
    iter_batches,
    safeguard_stats,
    safeguard_summary,
    search_record,
)
from espnet_adapters.whisper.inputs import (
    add_input_arguments,
    batch_inputs,
    check_adapter_encoder_trim,
    input_kind,
    load_payloads,
    open_cache,
    speech_margin,
)
from espnet_adapters.whisper.features import stack_features
from espnet_adapters.whisper.model import load_whisper, pick_device

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "ct2")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    add_input_arguments(parser)
    parser.add_argument("--adapter_dir", type=Path, default=None, help="A peft LoRA adapter on --whisper_model.")
    parser.add_argument("--merge_adapter", type=str2bool, default=False, help="Merge the adapter into the weights.")
    parser.add_argument(
        "--lang_mode", choices=("forced", "auto"), default="forced",
        help="forced: language token from utt2lang; auto: Whisper detects the language.",
    )
    parser.add_argument("--decode_backend", choices=BACKENDS, default="hf",
                        help="hf: transformers (+ peft); ct2: CTranslate2 on --ct2_dir.")
    parser.add_argument("--ct2_dir", type=Path, default=None,
                        help="With --decode_backend ct2: export_adapter's ct2_<quantization> dir, or a CT2 base model.")
    parser.add_argument("--ct2_compute_type", default="default",
                        help="CTranslate2 compute type (default: the model's quantization, as the device allows).")
    add_search_arguments(parser)
    return parser


def check_backend_args(args: argparse.Namespace) -> None:
    """Options that do not go with the chosen backend are the user's error."""
    if args.decode_backend == "hf":
        if args.ct2_dir is not None:
            raise UserInputError("--ct2_dir is only read with --decode_backend ct2")
        return
    if args.ct2_dir is None:
        raise UserInputError("--decode_backend ct2 needs --ct2_dir (an export_adapter output's ct2_<quantization> dir)")
    if args.encoder_cache is not None:
        raise UserInputError(f"{args.encoder_cache}: cached encoder outputs are transformers'; --decode_backend ct2 "
                             "decodes from audio or --feats_scp")
    if args.adapter_dir is not None:
        raise UserInputError(f"{args.adapter_dir}: --decode_backend ct2 takes no --adapter_dir: export it merged "
                             "(espnet_adapters.bin.export_adapter) and give its ct2_<quantization> dir as --ct2_dir")


def run(args: argparse.Namespace) -> None:
    """Load the inputs and the model, decode in batches, write the outputs."""
    torch.set_num_threads(args.num_threads)
    opts = decode_options(args, args.lang_mode)
    check_backend_args(args)
    adapter_dirs = [] if args.adapter_dir is None else [args.adapter_dir]
    ct2 = None
    if args.decode_backend == "ct2":
        ct2 = open_ct2_whisper(args.ct2_dir, args.whisper_model, ngpu=args.ngpu, num_threads=args.num_threads,
                               compute_type=args.ct2_compute_type)
        adapter_dirs = [] if ct2.export.adapter_copy is None else [ct2.export.adapter_copy]
        processor = ct2.processor
    cut_layer = check_adapter_encoder_trim(adapter_dirs, opts.encoder_trim, opts.encoder_span)
    if ct2 is not None and cut_layer is not None and opts.encoder_trim is not None:
        raise UserInputError(f"{adapter_dirs[0]}: the adapter cuts the encoder frames before layer {cut_layer}, "
                             "which CTranslate2 cannot; decode it with --decode_backend hf")
    if ct2 is not None and opts.encoder_span == "speech":
        raise UserInputError("encoder_span speech: CTranslate2 runs its encoder on the 30 s window; "
                             "decode with --decode_backend hf")
    if ct2 is None:
        model, processor = load_whisper(args.whisper_model, pick_device(args.ngpu), args.adapter_dir,
                                        args.merge_adapter)
    loaded = load_payloads(args.data_dir, processor.feature_extractor, keys=args.keys, feats_scp=args.feats_scp,
                           encoder_cache=args.encoder_cache)
    utt2lang = {}
    if args.lang_mode == "forced":
        utt2lang = forced_languages(args.data_dir / "utt2lang", list(loaded.features), processor.tokenizer)
    audio_seconds = loaded.audio_seconds
    cache = None
    if args.encoder_cache is not None:
        cache = open_cache(args.encoder_cache, args.whisper_model, list(loaded.features), adapter_dirs, args.feats_scp,
                           speech_margin(opts))
    items = [(utt, feats, utt2lang.get(utt, "")) for utt, feats in loaded.features.items()]
    start = time.perf_counter()
    hyps: list[Hypothesis] = []
    counts = safeguard_stats()
    with tqdm(total=len(items), desc=f"decode {args.data_dir.name}", mininterval=10) as progress:
        for batch in iter_batches(items, opts, loaded.durations):
            utts = [utt for utt, _, _ in batch]
            durations = [loaded.durations.get(utt) for utt in utts]
            forced = [lang for _, _, lang in batch] if opts.lang_mode == "forced" else None
            if ct2 is not None:  # features only (check_backend_args)
                features = stack_features([feats for _, feats, _ in batch if feats is not None])
                texts, languages = ct2_decode_batch(ct2, features, languages=forced, opts=opts, durations=durations,
                                                    stats=counts)
            else:
                inputs = batch_inputs(batch, cache, model=model, durations=durations, encoder_trim=opts.encoder_trim,
                                      cut_layer=cut_layer, encoder_span=opts.encoder_span)
                languages = forced if forced is not None else detect_languages(model, **inputs)
                texts = decode_features(model, processor.tokenizer, **inputs, languages=languages, opts=opts,
                                        durations=durations, stats=counts)
            hyps.extend(Hypothesis(*hyp) for hyp in zip(utts, texts, languages))
            progress.update(len(batch))
    wall = time.perf_counter() - start
    search = search_record(opts)
    if ct2 is not None:  # the backend is part of the decoding variant (results tables group by options_changed)
        search["options_changed"] = {**search["options_changed"], "decode_backend": ct2.backend}
    stats = {
        "utterances": len(hyps),
        "audio_seconds": None if audio_seconds is None else round(audio_seconds, 2),
        "decode_seconds": round(wall, 2),
        "rtf": round(wall / audio_seconds, 4) if audio_seconds else None,
        "whisper_model": args.whisper_model,
        "adapter_dir": None if args.adapter_dir is None else str(args.adapter_dir),
        "merge_adapter": args.merge_adapter,
        "input": input_kind(args.feats_scp, args.encoder_cache),
        **search,
        **counts,
        "durations_from": loaded.durations_from,
        "device": str(model.device) if ct2 is None else ct2.model.device,
        "num_threads": args.num_threads,
    }
    if ct2 is not None:  # an hf decoding's stats.json stays as it was: no decode_backend means hf
        stats.update(ct2.record(), merge_adapter=None)
    write_decode_outputs(args.out_dir, stats, hyps={hyp.utt_id: hyp.text for hyp in hyps},
                         langs={hyp.utt_id: hyp.lang for hyp in hyps})
    logger.info("decoded %d utterances in %.1f s (%s); %s", len(hyps), wall, stats["input"], safeguard_summary(counts))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.whisper_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
