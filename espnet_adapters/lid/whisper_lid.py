"""Whisper's own language detection, restricted to the recipe's languages: the LID baseline.

Whisper detects the language with one decoder step from
``<|startoftranscript|>``: the next token's distribution over the language
tokens (``<|hi|>``, ``<|pa|>`` ...).  Over all 99 languages it often answers
Urdu for Hindi or Marathi for Punjabi, which no router could use; restricted
to the labels the recipe has adapters for, it is the fair baseline for a
trained LID, and it costs one decoder step on the same encoder outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from espnet_adapters.utils.cli import UserInputError


def language_token_ids(model: WhisperForConditionalGeneration, labels: Sequence[str]) -> list[int]:
    """The ids of ``<|label|>`` for each label; an unknown language is an error."""
    lang_to_id = model.generation_config.lang_to_id
    unknown = [label for label in labels if f"<|{label}|>" not in lang_to_id]
    if unknown:
        raise UserInputError(f"Whisper has no language token for {', '.join(unknown)} (labels {', '.join(labels)})")
    return [lang_to_id[f"<|{label}|>"] for label in labels]


@torch.inference_mode()
def whisper_lid_posteriors(
    model: WhisperForConditionalGeneration, encoder_outputs: torch.Tensor, labels: Sequence[str]
) -> torch.Tensor:
    """P(label | audio) (B, n_labels), float32 on the CPU, from encoder outputs (B, 1500, d_model).

    The softmax runs over the language tokens of ``labels`` only, so each row
    sums to 1 over the recipe's languages.
    """
    token_ids = language_token_ids(model, labels)
    start = model.generation_config.decoder_start_token_id
    hidden = encoder_outputs.to(model.device, model.dtype)
    decoder_input_ids = torch.full((hidden.shape[0], 1), start, dtype=torch.long, device=model.device)
    cached = BaseModelOutput(last_hidden_state=hidden)
    logits = model(encoder_outputs=cached, decoder_input_ids=decoder_input_ids).logits
    return torch.softmax(logits[:, -1, token_ids].float(), dim=-1).cpu()
