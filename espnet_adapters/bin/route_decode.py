#!/usr/bin/env python3
"""Decode a pooled multilingual data dir, routing each utterance to language adapter(s).

The language of an utterance is unknown to the system: a LID stage gives
posteriors over the adapters' languages, and a strategy turns them into
per-utterance adapter weights (espnet_adapters.whisper.routing):

  oracle     the true language's adapter, from utt2lang (upper bound)
  hard       the argmax language's adapter
  soft       all adapters, their LoRA deltas mixed by the posteriors
  threshold  hard if max p >= --tau, else the --top_k posteriors renormalised (soft)
  hierarchical  the language family first (--families), then the language within it:
             hard when both the family's and the language's share of it reach --tau,
             the family's languages mixed when only the family does, all mixed otherwise
  base       no adapter; Whisper detects the language itself

The decoder's language token is the adapter language of largest weight (the
true language for oracle, the routed one for hard), or Whisper's own detection
for base.  Utterances routed to the same single adapter decode in batches of
their own; mixtures batch together, each row with its own weights.  Every
strategy runs through the same routed model (base = all-zero weights, which is
exactly the base model), so their timings compare.

Inputs and search options: like whisper_decode (audio, --feats_scp or
--encoder_cache, --keys; --decode_config and its overriding flags, including
--encoder_trim, which every adapter must have been trained with);
``--adapter LANG=DIR`` once per language; ``--posteriors`` (all but oracle and
base), lines ``utt hi:0.91 it:0.05 pa:0.03 te:0.01``; a language missing from a
line has posterior 0.  utt2lang is read for oracle and for routing accuracy.

Writes, atomically, into ``--out_dir``:
  hyp         Kaldi text file: ``utt hypothesis``
  hyp_lang    ``utt lang``: the language token decoded with
  routing     ``utt lang hi:1 it:0 ...``: that language and the adapter weights
  stats.json  utterances, decode seconds, ms per utterance, strategy, tau, top_k,
              how many utterances got one adapter / a mixture / none, routing
              accuracy against utt2lang, adapters, input, options, and the
              decoding safeguards' counts (fallbacks, fallbacks_unresolved,
              capped; see whisper_decode) with where the durations came from
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

import torch

from espnet_adapters.decode_io import write_decode_outputs
from espnet_adapters.routing.decode import (
    adapter_families,
    batch_key,
    check_route_options,
    decode_routed,
    load_adapter_dirs,
    parse_adapter_arg,
    routed_counts,
    routing_accuracy,
    routing_line,
    strategy_posteriors,
)
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.whisper.decode import (
    add_search_arguments, decode_options, safeguard_stats, safeguard_summary, search_record,
)
from espnet_adapters.whisper.inputs import (
    add_input_arguments,
    check_adapter_encoder_trim,
    input_kind,
    load_payloads,
    open_cache,
    speech_margin,
)
from espnet_adapters.whisper.model import pick_device
from espnet_adapters.whisper.routing import STRATEGIES, adapter_languages, load_routed_whisper, route, routed_languages

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    add_input_arguments(parser)
    parser.add_argument(
        "--adapter", type=parse_adapter_arg, action="append", required=True, metavar="LANG=DIR",
        help="A language's LoRA adapter; repeat for every language.",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, required=True, help="How utterances are routed.")
    parser.add_argument("--posteriors", type=Path, default=None, help="LID posteriors (not for oracle and base).")
    parser.add_argument("--tau", type=float, default=0.5, help="threshold: max posterior for hard routing.")
    parser.add_argument("--top_k", type=int, default=2, help="threshold: adapters mixed below --tau.")
    parser.add_argument("--families", type=Path, default=Path("conf/families.yaml"),
                        help="hierarchical: language -> family (conf/families.yaml).")
    add_search_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    """Route, decode in batches, write the outputs."""
    torch.set_num_threads(args.num_threads)
    adapters = load_adapter_dirs(args.adapter)
    check_route_options(args.strategy, args.posteriors, args.tau, args.top_k, list(adapters))
    lang_mode = "auto" if args.strategy == "base" else "forced"  # forced: batches grouped by batch_key
    opts = decode_options(args, lang_mode)
    cut_layer = check_adapter_encoder_trim(list(adapters.values()), opts.encoder_trim, opts.encoder_span)
    model, processor = load_routed_whisper(args.whisper_model, pick_device(args.ngpu), adapters)
    languages = adapter_languages(model)
    unknown = [lang for lang in languages if f"<|{lang}|>" not in model.generation_config.lang_to_id]
    if unknown:
        raise UserInputError(f"--adapter {unknown[0]}=...: {unknown[0]} is not a Whisper language code")
    loaded = load_payloads(args.data_dir, processor.feature_extractor, keys=args.keys, feats_scp=args.feats_scp,
                           encoder_cache=args.encoder_cache)
    payloads, audio_seconds = loaded.features, loaded.audio_seconds
    utts = list(payloads)
    cache = None
    if args.encoder_cache is not None:
        cache = open_cache(args.encoder_cache, args.whisper_model, utts, list(adapters.values()), args.feats_scp,
                           speech_margin(opts))
    posteriors = strategy_posteriors(args.strategy, utts, languages, utt2lang=args.data_dir / "utt2lang",
                                     posteriors=args.posteriors)
    families = adapter_families(args.families, languages) if args.strategy == "hierarchical" else None
    rows = route(posteriors, args.strategy, args.tau, args.top_k, families)
    weights = dict(zip(utts, rows))
    routed_lang = dict(zip(utts, routed_languages(rows, languages)))
    keys = {utt: batch_key(row, languages) for utt, row in weights.items()}
    start = time.perf_counter()
    items = [(utt, payloads[utt], keys[utt]) for utt in utts]
    counts = safeguard_stats()
    hyps = decode_routed(model, processor, items, cache, weights, routed_lang, opts, loaded.durations, counts,
                         cut_layer)
    wall = time.perf_counter() - start
    stats = {
        "utterances": len(hyps),
        "audio_seconds": None if audio_seconds is None else round(audio_seconds, 2),
        "decode_seconds": round(wall, 3),
        "ms_per_utterance": round(1000 * wall / len(hyps), 2) if hyps else None,
        "rtf": round(wall / audio_seconds, 4) if audio_seconds else None,
        "strategy": args.strategy,
        "tau": args.tau if args.strategy in ("threshold", "hierarchical") else None,
        "top_k": args.top_k if args.strategy == "threshold" else None,
        "routed": routed_counts(keys, list(adapters)),
        "routing_accuracy": routing_accuracy(args.data_dir / "utt2lang", hyps),
        "adapters": {lang: str(path) for lang, path in adapters.items()},
        "posteriors": None if args.strategy in ("oracle", "base") else str(args.posteriors),
        "whisper_model": args.whisper_model,
        "input": input_kind(args.feats_scp, args.encoder_cache),
        **search_record(opts),
        **counts,
        "durations_from": loaded.durations_from,
        "device": str(model.device),
        "num_threads": args.num_threads,
    }
    write_decode_outputs(
        args.out_dir, stats, hyps={hyp.utt_id: hyp.text for hyp in hyps}, langs={hyp.utt_id: hyp.lang for hyp in hyps},
        maps={"routing": {hyp.utt_id: routing_line(hyp.lang, weights[hyp.utt_id], languages) for hyp in hyps}},
    )
    logger.info("%s routing: decoded %d utterances in %.1f s; %s", args.strategy, len(hyps), wall,
                safeguard_summary(counts))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.route_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
