"""Per-row cross-attention masks: each utterance of a batch attends to its own encoder frames only.

With ``encoder_span: speech`` (:mod:`espnet_adapters.whisper.inputs`) every
utterance's encoder outputs have their own length (its speech plus a margin),
and a batch pads them to its longest.  Whisper's decoder has no mask for its
cross-attention (transformers' ``WhisperDecoder`` passes none), so a padded
frame would be attended to like a real one and an utterance's transcript would
depend on its batch-mates.  :class:`CrossAttentionFrames` adds the mask: a
forward pre-hook on every decoder layer's ``encoder_attn`` gives it an
additive mask that hides the frames at or beyond each row's length.  A padded
batch then decodes every row as that row alone would (up to float rounding):
the tests hold a batch against its rows one by one.

The rows follow generate's expansion for beam search (each row repeated
``num_beams`` times, as generate repeats the encoder outputs) and the fallback's
subsets (:meth:`CrossAttentionFrames.rows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch


def decoder_cross_attentions(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The ``encoder_attn`` module of every decoder layer of a (peft-wrapped) Whisper model."""
    modules = [module for name, module in model.named_modules()
               if name.endswith("encoder_attn") and ".decoder." in f".{name}"]
    if not modules:
        raise ValueError("no decoder cross-attention (encoder_attn) found: not a Whisper model")
    return modules


def frames_mask(frames: torch.Tensor, rows: int, keys: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask (rows, 1, 1, keys) for ``frames`` (one length per utterance).

    ``rows`` may be a multiple of ``len(frames)`` (generate repeats each
    utterance for its beams, consecutively); a frame at or beyond the length is
    masked with the dtype's lowest value.
    """
    count = len(frames)
    if count == 0 or rows % count:
        raise ValueError(f"cross-attention mask: {rows} decoder rows for {count} utterances")
    lengths = frames.repeat_interleave(rows // count) if rows != count else frames
    hidden = torch.arange(keys, device=lengths.device)[None, :] >= lengths[:, None]
    mask = torch.zeros(rows, 1, 1, keys, dtype=dtype, device=lengths.device)
    return mask.masked_fill_(hidden[:, None, None, :], torch.finfo(dtype).min)


class CrossAttentionFrames:
    """Install on a model once; :meth:`active` (or :meth:`rows`) masks the calls made inside it.

    ``frames`` holds the number of valid encoder frames of each batch row
    (a 1-D integer tensor); outside :meth:`active` the hooks do nothing.
    """

    def __init__(self, model: torch.nn.Module, frames: torch.Tensor | Sequence[int]) -> None:
        self.frames = torch.as_tensor(frames, dtype=torch.long)
        self._model = model
        self._current: torch.Tensor | None = None

    def _hook(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple:
        if self._current is None:
            return args, kwargs
        keys_values = kwargs.get("key_value_states")
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if keys_values is None or hidden is None:
            raise RuntimeError("cross-attention called without key_value_states/hidden_states keywords:"
                               " this transformers version calls Whisper's encoder_attn otherwise")
        if kwargs.get("attention_mask") is not None:
            raise RuntimeError("Whisper's cross-attention already received a mask: not stacking a second one")
        frames = self._current.to(hidden.device)
        kwargs["attention_mask"] = frames_mask(frames, hidden.shape[0], keys_values.shape[1], hidden.dtype)
        return args, kwargs

    @contextmanager
    def active(self, frames: torch.Tensor | None = None) -> Iterator[None]:
        """Mask the model's cross-attention inside the block (``frames``: other rows than the constructor's)."""
        self._current = self.frames if frames is None else torch.as_tensor(frames, dtype=torch.long)
        handles = [module.register_forward_pre_hook(self._hook, with_kwargs=True)
                   for module in decoder_cross_attentions(self._model)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._current = None

    def rows(self, rows: Sequence[int]) -> Any:
        """:meth:`active` for some rows of the batch (the fallback's pending rows), in their order."""
        return self.active(self.frames[torch.as_tensor(list(rows), dtype=torch.long)])
