"""Decoding with routed adapters: what route_decode and codeswitch_decode share.

The routed forward pass (LoRA deltas mixed per utterance, the strategies'
weights) is ``espnet_adapters.whisper.routing``; here are its inputs and
outputs on the decoding side: ``--adapter LANG=DIR`` pairs, the LID posteriors
and the truth a strategy routes on, the batching key (utterances with one and
the same adapter batch together, mixtures share batches), the batched decoding
under per-row routing weights, and the ``routing`` file and routing accuracy
that route_decode writes.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from peft import PeftModel
from tqdm import tqdm
from transformers import WhisperProcessor

from espnet_adapters.data.families import read_families
from espnet_adapters.data.kaldi import read_map, read_map_lines
from espnet_adapters.routing.posteriors import no_adapter_error, read_posteriors
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, Hypothesis, decode_features, detect_languages, iter_batches
from espnet_adapters.whisper.encoder_cache import EncoderCache
from espnet_adapters.whisper.inputs import batch_inputs
from espnet_adapters.whisper.routing import RoutingWeights

_LANG = re.compile(r"\w[\w-]*")
MIXTURE, NO_ADAPTER = "~mixture", "~none"  # batch keys; "~" sorts after language codes


def parse_adapter_arg(value: str) -> tuple[str, Path]:
    """argparse type of ``--adapter LANG=DIR``."""
    lang, sep, directory = value.partition("=")
    if not sep or not _LANG.fullmatch(lang) or not directory:
        raise argparse.ArgumentTypeError(f"expected LANG=DIR, got {value!r}")
    return lang, Path(directory)


def load_adapter_dirs(pairs: Iterable[tuple[str, Path]]) -> dict[str, Path]:
    """Language -> adapter dir from the ``--adapter`` pairs; a language given twice is an error."""
    adapters: dict[str, Path] = {}
    for lang, directory in pairs:
        if lang in adapters:
            raise UserInputError(f"--adapter {lang}= given twice ({adapters[lang]}, {directory})")
        adapters[lang] = directory
    return adapters


def check_route_options(
    strategy: str, posteriors: Path | None, tau: float, top_k: int, languages: Sequence[str]
) -> None:
    """The strategy's options, before anything is loaded."""
    if strategy in ("hard", "soft", "threshold", "hierarchical") and posteriors is None:
        raise UserInputError(f"--strategy {strategy} needs --posteriors (from the LID stage)")
    if strategy == "hierarchical" and not 0.0 <= tau <= 1.0:
        raise UserInputError(f"--tau {tau}: a posterior threshold, in [0, 1]")
    if strategy == "threshold":
        if not 0.0 <= tau <= 1.0:
            raise UserInputError(f"--tau {tau}: a posterior threshold, in [0, 1]")
        if not 1 <= top_k <= len(languages):
            raise UserInputError(f"--top_k {top_k}: must be in 1..{len(languages)} (the number of adapters)")


def adapter_families(path: Path, languages: Sequence[str]) -> list[str]:
    """The family of each adapter language from ``path`` (conf/families.yaml); a language without one is an error."""
    families = read_families(path)
    missing = [lang for lang in languages if lang not in families]
    if missing:
        raise UserInputError(f"{path}: no family for {', '.join(missing)} (hierarchical routing needs one per adapter)")
    return [families[lang] for lang in languages]


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
            raise no_adapter_error(f"{utt2lang}:{number}", utt, lang, languages)
        matrix[row, languages.index(lang)] = 1.0
    return matrix


def strategy_posteriors(
    strategy: str, utts: Sequence[str], languages: Sequence[str], *, utt2lang: Path, posteriors: Path | None
) -> torch.Tensor:
    """What the strategy routes on: the LID's posteriors, the truth for oracle, nothing (zeros) for base."""
    if strategy == "oracle":
        return read_truth(utt2lang, utts, languages)
    if strategy == "base":
        return torch.zeros(len(utts), len(languages))
    if posteriors is None:
        raise UserInputError(f"--strategy {strategy} needs --posteriors (from the LID stage)")
    return read_posteriors(posteriors, utts, languages)


def batch_key(row: torch.Tensor, languages: Sequence[str]) -> str:
    """Utterances with one and the same adapter batch together (one delta per layer); mixtures share batches."""
    used = row.nonzero().flatten().tolist()
    if len(used) == 1:
        return languages[used[0]]
    return MIXTURE if used else NO_ADAPTER


def routed_counts(keys: Mapping[str, str], languages: Sequence[str]) -> dict[str, int]:
    """How many utterances got one adapter, a mixture, none (stats.json ``routed``)."""
    values = list(keys.values())
    return {
        "one_adapter": sum(key in languages for key in values),
        "mixture": sum(key == MIXTURE for key in values),
        "no_adapter": sum(key == NO_ADAPTER for key in values),
    }


def decode_routed(
    model: PeftModel, processor: WhisperProcessor, items: list[tuple[str, np.ndarray | None, str]],
    cache: EncoderCache | None, weights: dict[str, torch.Tensor], routed: dict[str, str | None], opts: DecodeOptions,
    durations: Mapping[str, float] | None = None, stats: MutableMapping[str, int] | None = None,
    cut_layer: int | None = None,
) -> list[Hypothesis]:
    """Decode every batch under its routing weights, in the routed language (Whisper's detection where none).

    ``durations`` (seconds per item; items without one get the flat cap and
    the whole encoder window) sort the items within their batch key, set the
    token caps and, with ``opts.encoder_trim``, the encoder frames the decoder
    sees (the encoder runs under the batch's routing weights, then is cut);
    ``stats`` counts the safeguards (decode_features); ``cut_layer``: the
    adapters' encoder cut layer (``check_adapter_encoder_trim``).
    """
    durations = durations or {}
    hyps: list[Hypothesis] = []
    with tqdm(total=len(items), desc="route decode", mininterval=10) as progress:
        for batch in iter_batches(items, opts, durations):
            utts = [utt for utt, _, _ in batch]
            seconds = [durations.get(utt) for utt in utts]
            rows = torch.stack([weights[utt] for utt in utts])
            with RoutingWeights(model, rows):
                inputs = batch_inputs(batch, cache, model=model, durations=seconds, encoder_trim=opts.encoder_trim,
                                      cut_layer=cut_layer, encoder_span=opts.encoder_span)
                languages = [routed[utt] for utt in utts]
                if None in languages:
                    detected = detect_languages(model, **inputs)
                    languages = [lang or guess for lang, guess in zip(languages, detected)]
            # Each attempt of the decoder runs under the weights of the rows it decodes (the loop
            # fallback re-decodes only some of the batch).
            texts = decode_features(model, processor.tokenizer, **inputs, languages=languages, opts=opts,
                                    durations=seconds, stats=stats,
                                    row_context=lambda pending, rows=rows: RoutingWeights(model, rows[pending]))
            hyps.extend(Hypothesis(*hyp) for hyp in zip(utts, texts, languages))
            progress.update(len(batch))
    return hyps


def routing_line(lang: str, weights: torch.Tensor, languages: Sequence[str]) -> str:
    """A ``routing`` file value: the decoding language, then ``lang:weight`` per adapter."""
    return " ".join([lang, *(f"{name}:{weight:.4g}" for name, weight in zip(languages, weights.tolist()))])


def routing_accuracy(utt2lang: Path, hyps: Sequence[Hypothesis]) -> float | None:
    """How often the decoding language is the true one; None without a complete utt2lang."""
    truth = read_map(utt2lang) if utt2lang.is_file() else {}
    if not hyps or any(hyp.utt_id not in truth for hyp in hyps):
        return None
    return round(sum(hyp.lang == truth[hyp.utt_id] for hyp in hyps) / len(hyps), 4)
