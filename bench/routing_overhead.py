#!/usr/bin/env python3
"""What adapter routing costs the decoder: no adapter vs one vs top-2 vs all, on the same tokens.

Stage 10 writes a decode time per routing strategy, but each strategy decodes other text, so
those times mix the routing cost with hypothesis lengths (and with whatever else ran on the
machine).  This isolates the cost of the LoRA deltas themselves: one routed Whisper holding
every language adapter of a finished run (espnet_adapters.whisper.routing), the same batches of
cached encoder outputs (stage 5; batches of one language, as route_decode groups one-adapter
utterances) and the same teacher-forced token sequences (each utterance's language prompt +
reference transcript) go through the decoder under four weightings:

  base     all-zero weights: no delta is computed (the base model; what "base" routing runs)
  one      one-hot on the utterance's language: one delta per LoRA layer (oracle, hard)
  top2     0.7 / 0.3 on two adapters (threshold routing below tau)
  all      posterior-like weights on every adapter: one delta per adapter (soft)

The variants are timed round-robin, --repeats rounds after one warm-up round, so that load
drifts hit them alike; the table gives the median ms per utterance per round and the ratio to
base.  Not measured: the LID classifier (stage 9 reports it: ~0.4 ms per utterance), the
encoder (cached, the same for every strategy), and autoregressive generation, whose per-step
decoder cost scales like this forward pass but whose step count depends on the output.

  . ./path.sh
  python bench/routing_overhead.py                      # exp/ and dump/ of the default run
  python bench/routing_overhead.py --langs "hi it" --utts 16 --batch_size 8 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.whisper.encoder_cache import EncoderCache
from espnet_adapters.whisper.routing import RoutingWeights, adapter_languages, load_routed_whisper

VARIANTS = ("base", "one", "top2", "all")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", default="hi it pa te", help="Adapter languages (one adapter each).")
    parser.add_argument("--whisper_model", default="whisper-base", help="Base model, as the recipe's --whisper_model.")
    parser.add_argument("--model_tag", default="whisper_base", help="exp/<model_tag>_lora_<lang>_<adapter_tag>.")
    parser.add_argument("--adapter_tag", default="r32_qv_dec", help="The adapters' tag (decoder-only: cached encoder).")
    parser.add_argument("--exp_dir", type=Path, default=Path("exp"), help="The run's experiment dir.")
    parser.add_argument("--dump_dir", type=Path, default=Path("dump"), help="The run's dump dir (raw/, <model>/encoder/).")
    parser.add_argument("--test_set", default="test", help="Split whose utterances are used (<lang>_<split>).")
    parser.add_argument("--utts", type=int, default=8, help="Utterances per language.")
    parser.add_argument("--batch_size", type=int, default=8, help="Utterances per forward pass.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed rounds (after one warm-up round).")
    parser.add_argument("--num_threads", type=int, default=2, help="torch CPU threads.")
    return parser


def load_inputs(args: argparse.Namespace, tokenizer) -> list[tuple[str, str, list[int]]]:
    """(utt, lang, prompt + reference token ids) for the first --utts utterances of each language."""
    items = []
    for lang in args.langs.split():
        text = read_map(args.dump_dir / "raw" / f"{lang}_{args.test_set}" / "text", allow_empty_value=True)
        for utt in sorted(text)[: args.utts]:
            tokenizer.set_prefix_tokens(language=lang, task="transcribe", predict_timestamps=False)
            items.append((utt, lang, tokenizer(text[utt]).input_ids))
    return items


def make_batch(
    group: list[tuple[str, str, list[int]]], caches: dict[str, EncoderCache], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Cached encoder outputs, padded token ids and languages of one batch of :func:`load_inputs` items."""
    encoder = torch.stack([caches[lang].get(utt) for utt, lang, _ in group])
    tokens = torch.full((len(group), max(len(ids) for _, _, ids in group)), pad_id)
    for row, (_, _, ids) in zip(tokens, group):
        row[: len(ids)] = torch.tensor(ids)
    return encoder, tokens, [lang for _, lang, _ in group]


def weight_rows(variant: str, langs: list[str], batch_langs: list[str]) -> torch.Tensor:
    """Adapter weights per utterance of a batch for one variant (columns in adapter load order)."""
    rows = torch.zeros(len(batch_langs), len(langs))
    for row, lang in zip(rows, batch_langs):
        own = langs.index(lang)
        if variant == "one":
            row[own] = 1.0
        elif variant == "top2":
            row[own], row[(own + 1) % len(langs)] = 0.7, 0.3
        elif variant == "all":
            row[:] = 0.1 / max(len(langs) - 1, 1)
            row[own] = 0.9
    return rows


def main() -> None:
    """Time the variants round-robin and print the table."""
    args = get_parser().parse_args()
    torch.set_num_threads(args.num_threads)
    langs = args.langs.split()
    adapters = {lang: args.exp_dir / f"{args.model_tag}_lora_{lang}_{args.adapter_tag}" / "adapter" for lang in langs}
    missing = [str(path) for path in adapters.values() if not path.is_dir()]
    if missing:
        raise SystemExit(f"no adapter at {missing[0]}: run the recipe's stage 6 first (or set --exp_dir/--adapter_tag)")
    model, processor = load_routed_whisper(args.whisper_model, torch.device("cpu"), adapters)
    order = adapter_languages(model)
    items = load_inputs(args, processor.tokenizer)
    caches = {lang: EncoderCache(args.dump_dir / args.model_tag / "encoder" / f"{lang}_{args.test_set}") for lang in langs}
    groups = []  # batches of one language, as route_decode batches one-adapter utterances
    for lang in langs:
        own = [item for item in items if item[1] == lang]
        groups += [own[start:start + args.batch_size] for start in range(0, len(own), args.batch_size)]
    batches = [make_batch(group, caches, processor.tokenizer.eos_token_id) for group in groups]

    def one_pass(variant: str) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for encoder, tokens, batch_langs in batches:
                with RoutingWeights(model, weight_rows(variant, order, batch_langs)):
                    model(encoder_outputs=(encoder,), decoder_input_ids=tokens)
        return time.perf_counter() - started

    timings: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_index in range(args.repeats + 1):
        for variant in VARIANTS:
            seconds = one_pass(variant)
            if round_index > 0:
                timings[variant].append(1000 * seconds / len(items))
    base = statistics.median(timings["base"])
    tokens = sum(len(ids) for _, _, ids in items)
    print(f"torch {torch.__version__}, {args.num_threads} threads, {platform.processor() or platform.machine()}, "
          f"load {os.getloadavg()[0]:.2f}; {args.whisper_model} + {len(langs)} adapters ({args.adapter_tag}); "
          f"{len(items)} utterances ({tokens} teacher-forced tokens), batch {args.batch_size}, "
          f"median of {args.repeats} rounds\n")
    print("| weights | adapters per LoRA layer | ms / utterance | vs base |")
    print("|---|---:|---:|---:|")
    for variant, used in zip(VARIANTS, (0, 1, 2, len(langs))):
        median = statistics.median(timings[variant])
        print(f"| {variant} | {used} | {median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
