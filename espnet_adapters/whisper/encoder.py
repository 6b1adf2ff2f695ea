"""Whisper's encoder in two parts: the lower layers, and the top layers with the final norm.

An adapter with LoRA on the top ``N`` encoder layers (``encoder_top: N`` in
``conf/lora``) leaves the lower ones frozen.  Their outputs are the same in
every training step, so stage 5 caches them (:func:`lower_states`, as it
caches the whole encoder's outputs for a decoder-only adapter), and a training
step runs only the top layers (:func:`upper_outputs`) and the decoder.

With ``encoder_trim`` the frames are cut to the speech *between* the two parts
(the cut layer, ``len(layers) - N``): the lower layers run on Whisper's whole
30 s window, exactly as in the base model, and the top layers on the speech
frames plus the margin only, ~5x cheaper for 5 s clips.  The top layers then
attend to fewer frames than they would on the window, which is what the
adapter is trained on; the decoders do the same for that adapter (its
``lora_meta.json`` records ``encoder_cut_layer``), so training and decoding
see one encoder.  Without ``encoder_trim`` nothing is cut and the two parts
are exactly the whole encoder (:func:`whole_encoder` is what the tests hold
them against).

The code follows ``WhisperEncoder.forward`` of transformers (conv1, conv2,
GELU, positions, layers, layer_norm; layerdrop is 0 in every Whisper).
"""

from __future__ import annotations

import torch

ENCODER_SPANS = ("window", "speech")  # encoder_span: Whisper's 30 s window, or the speech + a margin (inputs.py)


def layer_count(encoder: torch.nn.Module) -> int:
    """How many transformer layers ``encoder`` has (6 in whisper-base)."""
    return len(encoder.layers)


def cut_layer_below_top(encoder_top: int, layers: int) -> int | None:
    """The cut layer of an adapter on the top ``encoder_top`` of ``layers`` layers (None for 0: after the encoder)."""
    if not 0 <= encoder_top <= layers:
        raise ValueError(f"encoder_top {encoder_top}, but the encoder has {layers} layers")
    return layers - encoder_top if encoder_top else None


def check_cut_layer(encoder: torch.nn.Module, cut_layer: int) -> None:
    """A cut layer must lie inside the encoder: 0 < cut_layer <= layers."""
    count = layer_count(encoder)
    if not 0 < cut_layer <= count:
        raise ValueError(f"encoder cut layer {cut_layer} outside 1..{count} (the encoder has {count} layers)")


def lower_states(encoder: torch.nn.Module, features: torch.Tensor, cut_layer: int) -> torch.Tensor:
    """The hidden states after the first ``cut_layer`` layers, (B, 1500, d), for features (B, n_mels, 3000)."""
    check_cut_layer(encoder, cut_layer)
    hidden = torch.nn.functional.gelu(encoder.conv1(features))
    hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    hidden = torch.nn.functional.dropout(hidden, p=encoder.dropout, training=encoder.training)
    for layer in encoder.layers[:cut_layer]:
        hidden = _layer_output(layer(hidden, None))
    return hidden


def upper_outputs(encoder: torch.nn.Module, states: torch.Tensor, cut_layer: int) -> torch.Tensor:
    """The layers from ``cut_layer`` on and the final layer norm, on ``states`` (any number of frames)."""
    check_cut_layer(encoder, cut_layer)
    hidden = states
    for layer in encoder.layers[cut_layer:]:
        hidden = _layer_output(layer(hidden, None))
    return encoder.layer_norm(hidden)


def pad_frames(rows: list[torch.Tensor]) -> torch.Tensor:
    """(T_i, d) tensors stacked into (B, max T_i, d), zeros after each row's end.

    Rows of one length stack as they are.  The zeros are never attended to:
    ``encoder_span: speech`` masks them (:mod:`espnet_adapters.whisper.cross_mask`).
    """
    longest = max(row.shape[0] for row in rows)
    out = rows[0].new_zeros(len(rows), longest, rows[0].shape[-1])
    for index, row in enumerate(rows):
        out[index, : row.shape[0]] = row
    return out


def whole_encoder(encoder: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The encoder's own forward: its ``last_hidden_state``."""
    return encoder(input_features=features).last_hidden_state


def _layer_output(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    # transformers < 4.5x returned (hidden_states, attentions); newer ones the tensor.
    return output[0] if isinstance(output, tuple) else output
