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
from typing import Iterator, Sequence, TypeVar

import torch
from transformers import PreTrainedTokenizerBase, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def iter_batches(items: Sequence[tuple[str, T, str]], opts: DecodeOptions) -> Iterator[list[tuple[str, T, str]]]:
    """Group ``(utt_id, payload, lang)`` items of one forced language into batches of ``batch_size``.

    The payload (trimmed features, or nothing when encoder outputs are cached)
    is carried along untouched.
    """
    if opts.lang_mode == "forced":
        groups: dict[str, list[tuple[str, T, str]]] = {}
        for item in items:
            groups.setdefault(item[2], []).append(item)
        ordered = [item for lang in sorted(groups) for item in groups[lang]]
    else:
        ordered = list(items)
    batch: list[tuple[str, T, str]] = []
    for item in ordered:
        if batch and (len(batch) == opts.batch_size or (opts.lang_mode == "forced" and batch[0][2] != item[2])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _encoder_kwargs(
    input_features: torch.Tensor | None, encoder_outputs: torch.Tensor | None
) -> dict[str, torch.Tensor | BaseModelOutput]:
    """The one model input given, as ``generate``/``detect_language`` take it.

    Cached encoder outputs go in as ``BaseModelOutput``: Whisper's ``generate``
    then skips the encoder, and decodes exactly as from the features that
    produced them.
    """
    if (input_features is None) == (encoder_outputs is None):
        raise ValueError("give exactly one of input_features or encoder_outputs")
    if input_features is not None:
        return {"input_features": input_features}
    return {"encoder_outputs": BaseModelOutput(last_hidden_state=encoder_outputs)}


def _to_model(model: WhisperForConditionalGeneration, tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(model.device, model.dtype)


@torch.inference_mode()
def detect_languages(
    model: WhisperForConditionalGeneration,
    *,
    input_features: torch.Tensor | None = None,
    encoder_outputs: torch.Tensor | None = None,
) -> list[str]:
    """Whisper's own language identification: one code (``hi``, ``it``) per utterance."""
    inputs = _encoder_kwargs(_to_model(model, input_features), _to_model(model, encoder_outputs))
    id_to_lang = {idx: code.strip("<|>") for code, idx in model.generation_config.lang_to_id.items()}
    return [id_to_lang[int(idx)] for idx in model.detect_language(**inputs).view(-1)]


@torch.inference_mode()
def decode_features(
    model: WhisperForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    input_features: torch.Tensor | None = None,
    encoder_outputs: torch.Tensor | None = None,
    languages: Sequence[str],
    opts: DecodeOptions,
) -> list[str]:
    """Transcribe a batch in the given languages; whitespace-normalised texts.

    Exactly one of ``input_features`` (B, n_mels, 3000) or ``encoder_outputs``
    (B, 1500, d_model) is given; either is moved to the model's device and dtype.

    One ``generate`` pass per utterance (``force_unique_generate_call``): an
    utterance is at most one 30 s window.  Without it, Whisper's generate seeks
    on into the window (and decodes it again) whenever the model emits a pair
    of timestamp tokens despite ``return_timestamps=False``, and that second
    pass crashes on ``encoder_outputs`` in transformers 5.23 (it slices
    ``input_features``, which is then None).
    """
    inputs = _encoder_kwargs(_to_model(model, input_features), _to_model(model, encoder_outputs))
    sequences = model.generate(
        **inputs,
        language=list(languages),
        task="transcribe",
        num_beams=opts.beam_size,
        do_sample=False,
        max_new_tokens=opts.max_new_tokens,
        return_timestamps=False,
        force_unique_generate_call=True,
    )
    return [" ".join(text.split()) for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]
