#!/usr/bin/env python3
"""Decode a pooled multilingual data dir, routing each utterance to language adapter(s).

The language of an utterance is unknown to the system: a LID stage gives
posteriors over the adapters' languages, and a strategy turns them into
per-utterance adapter weights (espnet_adapters.whisper.routing):

  oracle     the true language's adapter, from utt2lang (upper bound)
  hard       the argmax language's adapter
  soft       all adapters, their LoRA deltas mixed by the posteriors
  threshold  hard if max p >= --tau, else the --top_k posteriors renormalised (soft)
  base       no adapter; Whisper detects the language itself

The decoder's language token is the adapter language of largest weight (the
true language for oracle, the routed one for hard), or Whisper's own detection
for base.  Utterances routed to the same single adapter decode in batches of
their own; mixtures batch together, each row with its own weights.  Every
strategy runs through the same routed model (base = all-zero weights, which is
exactly the base model), so their timings compare.

Inputs: like whisper_decode (audio, --feats_scp or --encoder_cache, --keys);
``--adapter LANG=DIR`` once per language; ``--posteriors`` (all but oracle and
base), lines ``utt hi:0.91 it:0.05 pa:0.03 te:0.01``; a language missing from a
line has posterior 0.  utt2lang is read for oracle and for routing accuracy.

Writes, atomically, into ``--out_dir``:
  hyp         Kaldi text file: ``utt hypothesis``
  hyp_lang    ``utt lang``: the language token decoded with
  routing     ``utt lang hi:1 it:0 ...``: that language and the adapter weights
  stats.json  utterances, decode seconds, ms per utterance, strategy, tau, top_k,
              how many utterances got one adapter / a mixture / none, routing
              accuracy against utt2lang, adapters, input, options
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from peft import PeftModel
from tqdm import tqdm
from transformers import WhisperProcessor

from espnet_adapters.bin.whisper_decode import add_decode_arguments, batch_inputs, input_kind, load_payloads, open_cache
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper.decode import DecodeOptions, Hypothesis, decode_features, detect_languages, iter_batches
from espnet_adapters.whisper.encoder_cache import EncoderCache
from espnet_adapters.whisper.model import pick_device
from espnet_adapters.whisper.routing import (
    STRATEGIES,
    RoutingWeights,
    adapter_languages,
    load_routed_whisper,
    route,
    routed_languages,
)

logger = logging.getLogger(__name__)

_LANG = re.compile(r"\w[\w-]*")
MIXTURE, NO_ADAPTER = "~mixture", "~none"  # batch keys; "~" sorts after language codes


def parse_adapter_arg(value: str) -> tuple[str, Path]:
    lang, sep, directory = value.partition("=")
    if not sep or not _LANG.fullmatch(lang) or not directory:
        raise argparse.ArgumentTypeError(f"expected LANG=DIR, got {value!r}")
    return lang, Path(directory)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    add_decode_arguments(parser)
    parser.add_argument(
        "--adapter", type=parse_adapter_arg, action="append", required=True, metavar="LANG=DIR",
        help="A language's LoRA adapter; repeat for every language.",
    )
    parser.add_argument("--strategy", choices=STRATEGIES, required=True, help="How utterances are routed.")
    parser.add_argument("--posteriors", type=Path, default=None, help="LID posteriors (not for oracle and base).")
    parser.add_argument("--tau", type=float, default=0.5, help="threshold: max posterior for hard routing.")
    parser.add_argument("--top_k", type=int, default=2, help="threshold: adapters mixed below --tau.")
    return parser


def load_adapter_dirs(args: argparse.Namespace) -> dict[str, Path]:
    adapters: dict[str, Path] = {}
    for lang, directory in args.adapter:
        if lang in adapters:
            raise UserInputError(f"--adapter {lang}= given twice ({adapters[lang]}, {directory})")
        adapters[lang] = directory
    return adapters


def _check_options(args: argparse.Namespace, languages: Sequence[str]) -> None:
    if args.strategy in ("hard", "soft", "threshold") and args.posteriors is None:
        raise UserInputError(f"--strategy {args.strategy} needs --posteriors (from the LID stage)")
    if args.strategy == "threshold":
        if not 0.0 <= args.tau <= 1.0:
            raise UserInputError(f"--tau {args.tau}: a posterior threshold, in [0, 1]")
        if not 1 <= args.top_k <= len(languages):
            raise UserInputError(f"--top_k {args.top_k}: must be in 1..{len(languages)} (the number of adapters)")


def _no_adapter(where: str, utt: str, lang: str, languages: Sequence[str]) -> UserInputError:
    given = ", ".join(languages)
    return UserInputError(f"{where}: {utt}: no adapter for language {lang!r} (--adapter given for {given})")


def _probability(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None  # also refuses nan


def read_posteriors(path: Path, utts: Sequence[str], languages: Sequence[str]) -> torch.Tensor:
    """(len(utts), len(languages)) posteriors from ``utt lang:p lang:p ...`` lines; absent languages are 0."""
    lines = read_map_lines(path)
    missing = [utt for utt in utts if utt not in lines]
    if missing:
        raise UserInputError(f"{path}: no posteriors for {len(missing)} utterance(s), e.g. {missing[0]}")
    column = {lang: k for k, lang in enumerate(languages)}
    matrix = torch.zeros(len(utts), len(languages))
    for row, utt in enumerate(utts):
        number, value = lines[utt]
        where, seen = f"{path}:{number}", set()
        for field in value.split():
            lang, _, text = field.partition(":")
            probability = _probability(text)
            if probability is None:
                raise UserInputError(f"{where}: {utt}: expected lang:probability in [0, 1], got {field!r}")
            if lang not in column:
                raise _no_adapter(where, utt, lang, languages)
            if lang in seen:
                raise UserInputError(f"{where}: {utt}: language {lang} given twice")
            seen.add(lang)
            matrix[row, column[lang]] = probability
        if not matrix[row].any():
            raise UserInputError(f"{where}: {utt}: all posteriors are 0")
    return matrix


def read_truth(utt2lang: Path, utts: Sequence[str], languages: Sequence[str]) -> torch.Tensor:
    """One-hot rows of the true languages (oracle routing): a perfect LID's posteriors."""
    if not utt2lang.is_file():
        raise UserInputError(f"{utt2lang}: missing; oracle routing takes the true language from it")
    lines = read_map_lines(utt2lang)
    matrix = torch.zeros(len(utts), len(languages))
    for row, utt in enumerate(utts):
        if utt not in lines:
            raise UserInputError(f"{utt2lang}: no language for utterance {utt}")
        number, lang = lines[utt]
        if lang not in languages:
            raise _no_adapter(f"{utt2lang}:{number}", utt, lang, languages)
        matrix[row, languages.index(lang)] = 1.0
    return matrix


def _posteriors(args: argparse.Namespace, utts: Sequence[str], languages: Sequence[str]) -> torch.Tensor:
    """What the strategy routes on: the LID's posteriors, the truth for oracle, nothing (zeros) for base."""
    if args.strategy == "oracle":
        return read_truth(args.data_dir / "utt2lang", utts, languages)
    if args.strategy == "base":
        return torch.zeros(len(utts), len(languages))
    return read_posteriors(args.posteriors, utts, languages)


def batch_key(row: torch.Tensor, languages: Sequence[str]) -> str:
    """Utterances with one and the same adapter batch together (one delta per layer); mixtures share batches."""
    used = row.nonzero().flatten().tolist()
    if len(used) == 1:
        return languages[used[0]]
    return MIXTURE if used else NO_ADAPTER


def decode_routed(
    model: PeftModel, processor: WhisperProcessor, items: list[tuple[str, np.ndarray | None, str]],
    cache: EncoderCache | None, weights: dict[str, torch.Tensor], routed: dict[str, str | None], opts: DecodeOptions,
) -> list[Hypothesis]:
    """Decode every batch under its routing weights, in the routed language (Whisper's detection where none)."""
    hyps: list[Hypothesis] = []
    with tqdm(total=len(items), desc="route decode", mininterval=10) as progress:
        for batch in iter_batches(items, opts):
            utts = [utt for utt, _, _ in batch]
            inputs = batch_inputs(batch, cache)
            with RoutingWeights(model, torch.stack([weights[utt] for utt in utts])):
                languages = [routed[utt] for utt in utts]
                if None in languages:
                    detected = detect_languages(model, **inputs)
                    languages = [lang or guess for lang, guess in zip(languages, detected)]
                texts = decode_features(model, processor.tokenizer, **inputs, languages=languages, opts=opts)
            hyps.extend(Hypothesis(*hyp) for hyp in zip(utts, texts, languages))
            progress.update(len(batch))
    return hyps


def _routing_line(lang: str, weights: torch.Tensor, languages: Sequence[str]) -> str:
    return " ".join([lang, *(f"{name}:{weight:.4g}" for name, weight in zip(languages, weights.tolist()))])


def _routing_accuracy(utt2lang: Path, hyps: Sequence[Hypothesis]) -> float | None:
    """How often the decoding language is the true one; None without a complete utt2lang."""
    truth = read_map(utt2lang) if utt2lang.is_file() else {}
    if not hyps or any(hyp.utt_id not in truth for hyp in hyps):
        return None
    return round(sum(hyp.lang == truth[hyp.utt_id] for hyp in hyps) / len(hyps), 4)


def run(args: argparse.Namespace) -> None:
    """Route, decode in batches, write the outputs."""
    torch.set_num_threads(args.num_threads)
    adapters = load_adapter_dirs(args)
    _check_options(args, list(adapters))
    model, processor = load_routed_whisper(args.whisper_model, pick_device(args.ngpu), adapters)
    languages = adapter_languages(model)
    unknown = [lang for lang in languages if f"<|{lang}|>" not in model.generation_config.lang_to_id]
    if unknown:
        raise UserInputError(f"--adapter {unknown[0]}=...: {unknown[0]} is not a Whisper language code")
    payloads, audio_seconds = load_payloads(args, processor.feature_extractor)
    utts = list(payloads)
    cache = open_cache(args, utts, list(adapters.values())) if args.encoder_cache is not None else None
    rows = route(_posteriors(args, utts, languages), args.strategy, args.tau, args.top_k)
    weights = dict(zip(utts, rows))
    routed_lang = dict(zip(utts, routed_languages(rows, languages)))
    keys = {utt: batch_key(row, languages) for utt, row in weights.items()}
    lang_mode = "auto" if args.strategy == "base" else "forced"  # forced: batches grouped by batch_key
    opts = DecodeOptions(args.beam_size, args.batch_size, args.max_new_tokens, lang_mode)
    start = time.perf_counter()
    items = [(utt, payloads[utt], keys[utt]) for utt in utts]
    hyps = decode_routed(model, processor, items, cache, weights, routed_lang, opts)
    wall = time.perf_counter() - start
    stats = {
        "utterances": len(hyps),
        "audio_seconds": None if audio_seconds is None else round(audio_seconds, 2),
        "decode_seconds": round(wall, 3),
        "ms_per_utterance": round(1000 * wall / len(hyps), 2) if hyps else None,
        "rtf": round(wall / audio_seconds, 4) if audio_seconds else None,
        "strategy": args.strategy,
        "tau": args.tau if args.strategy == "threshold" else None,
        "top_k": args.top_k if args.strategy == "threshold" else None,
        "routed": {
            "one_adapter": sum(key in adapters for key in keys.values()),
            "mixture": sum(key == MIXTURE for key in keys.values()),
            "no_adapter": sum(key == NO_ADAPTER for key in keys.values()),
        },
        "routing_accuracy": _routing_accuracy(args.data_dir / "utt2lang", hyps),
        "adapters": {lang: str(path) for lang, path in adapters.items()},
        "posteriors": None if args.strategy in ("oracle", "base") else str(args.posteriors),
        "whisper_model": args.whisper_model,
        "input": input_kind(args),
        "options": vars(opts),
        "device": str(model.device),
        "num_threads": args.num_threads,
    }
    with atomic_dir(args.out_dir) as tmp:
        write_map(tmp / "hyp", {hyp.utt_id: hyp.text for hyp in hyps})
        write_map(tmp / "hyp_lang", {hyp.utt_id: hyp.lang for hyp in hyps})
        routing = {hyp.utt_id: _routing_line(hyp.lang, weights[hyp.utt_id], languages) for hyp in hyps}
        write_map(tmp / "routing", routing)
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    logger.info("%s routing: decoded %d utterances in %.1f s", args.strategy, len(hyps), wall)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.route_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
