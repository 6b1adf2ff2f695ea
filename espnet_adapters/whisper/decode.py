"""Batched Whisper decoding of a Kaldi data dir.

The language is forced per utterance from ``utt2lang`` by default: Whisper's own
language detection is unreliable on low-resource languages (it often answers in
the wrong script), and a recipe that knows the language should say so.  With
``lang_mode="auto"`` Whisper detects it, and the detected language is returned
so the recipe can report how often it was right.

Greedy or beam search, no timestamps, and a cap on new tokens: without one,
unintelligible audio makes Whisper loop until its 448-token limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class DecodeOptions:
    """How to search.  One dataclass so every backend decodes with the same knobs."""

    beam_size: int = 1
    batch_size: int = 8
    max_new_tokens: int = 224
    lang_mode: str = "forced"  # "forced" (from utt2lang) or "auto" (Whisper detects)


@dataclass(frozen=True)
class Hypothesis:
    """One decoded utterance: the text and the language Whisper decoded in."""

    utt_id: str
    text: str
    lang: str


def iter_batches(items: Sequence[tuple[str, np.ndarray, str]], opts: DecodeOptions) -> Iterator[list]:
    """Group utterances of the same forced language into batches of ``batch_size``."""
    if opts.lang_mode == "forced":
        groups: dict[str, list] = {}
        for item in items:
            groups.setdefault(item[2], []).append(item)
        ordered = [item for lang in sorted(groups) for item in groups[lang]]
    else:
        ordered = list(items)
    batch: list = []
    for item in ordered:
        if batch and (len(batch) == opts.batch_size or (opts.lang_mode == "forced" and batch[0][2] != item[2])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


@torch.inference_mode()
def decode_batch(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    batch: Sequence[tuple[str, np.ndarray, str]],
    opts: DecodeOptions,
) -> list[Hypothesis]:
    """Decode one batch; ``batch`` items are ``(utt_id, audio at 16 kHz, language)``."""
    features = processor.feature_extractor(
        [audio for _, audio, _ in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt"
    ).input_features.to(model.device, model.dtype)
    if opts.lang_mode == "forced":
        languages = [lang for _, _, lang in batch]
    else:
        # Whisper's own detection (one extra encoder pass), then decode in the detected language.
        id_to_lang = {idx: code.strip("<|>") for code, idx in model.generation_config.lang_to_id.items()}
        languages = [id_to_lang[int(idx)] for idx in model.detect_language(input_features=features).view(-1)]
    sequences = model.generate(
        features,
        language=languages,
        task="transcribe",
        num_beams=opts.beam_size,
        do_sample=False,
        max_new_tokens=opts.max_new_tokens,
        return_timestamps=False,
    )
    texts = processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
    hyps = [
        Hypothesis(utt_id, " ".join(text.split()), lang)
        for (utt_id, _, _), text, lang in zip(batch, texts, languages)
    ]
    return hyps
