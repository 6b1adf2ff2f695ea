"""Language-specific LoRA adapters on Whisper with ``peft``.

A :class:`LoraSpec` (``conf/lora/*.yaml``) says which linear layers get a
low-rank update: module names (``q_proj``, ``v_proj``, ``fc1`` ...), in which
stack (``encoder``, ``decoder`` or ``both``) and optionally which layers.  It
becomes one regular expression over module names, because peft matches a
*list* of names against every module of the model (``q_proj`` would hit the
encoder too) while a *string* is matched with ``re.fullmatch`` against the full
name, which is how the stack and layer restrictions are expressed.  In the
decoder, ``q_proj``/``v_proj`` cover both the self-attention and the
cross-attention (``encoder_attn``).

``task_type`` is left unset on purpose: with ``TaskType.SEQ_2_SEQ_LM`` peft
wraps the model in ``PeftModelForSeq2SeqLM``, whose ``forward()`` passes
``input_ids`` to Whisper, which has none (it takes ``input_features``).

A decoder-only adapter leaves the encoder untouched, so its outputs can be
computed once and cached (:func:`touches_encoder` tells the trainer).
``encoder_top: N`` adds the top N encoder layers to a decoder adapter: the
layers below stay frozen, their outputs are cached, and the frames are cut to
the speech before the top layers (:func:`encoder_cut_layer`,
:mod:`espnet_adapters.whisper.encoder`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import YamlConfig
from espnet_adapters.whisper.encoder import cut_layer_below_top
from espnet_adapters.utils.fileio import atomic_dir

logger = logging.getLogger(__name__)

WHERE_CHOICES = ("encoder", "decoder", "both")
META_FILE = "lora_meta.json"


@dataclass(frozen=True)
class LoraSpec(YamlConfig):
    """One LoRA preset; the defaults are the seed papers' (r=32, alpha=64, q/v of the decoder).

    ``as_dict()`` (the options, no file name) is what identifies the adapter's shape.
    """

    r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    where: str = "decoder"
    layers: tuple[int, ...] | None = None
    encoder_top: int = 0  # with where: decoder, also the top N encoder layers (the ones below are cached)
    source: str = "<default LoraSpec>"  # the yaml file, named in error messages

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"r must be >= 1, got {self.r}")
        if self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise ValueError("target_modules is empty")
        bad = [name for name in self.target_modules if not re.fullmatch(r"\w+", name)]
        if bad:
            raise ValueError(f"target_modules are module names like q_proj, not patterns: {bad}")
        if self.where not in WHERE_CHOICES:
            raise ValueError(f"where must be one of {', '.join(WHERE_CHOICES)}, got {self.where!r}")
        if self.layers is not None and (not self.layers or min(self.layers) < 0):
            raise ValueError(f"layers must be null or a non-empty list of indices >= 0, got {list(self.layers)}")
        if self.encoder_top < 0 or isinstance(self.encoder_top, bool):
            raise ValueError(f"encoder_top must be a number of layers >= 0, got {self.encoder_top!r}")
        if self.encoder_top and self.where != "decoder":
            raise ValueError(f"encoder_top adds encoder layers to a decoder adapter (where: decoder), not to where: {self.where}")

    def at_rank(self, rank: int) -> LoraSpec:
        """This preset at rank ``rank`` with the same scaling alpha/r (``--lora_ranks``).

        E.g. r 32, alpha 64 at rank 8: alpha 16.  lora_alpha stays an integer (peft's
        type and ours), so a rank at which alpha * rank / r is fractional is an error.
        """
        if rank < 1:
            raise UserInputError(f"{self.source}: rank must be >= 1, got {rank}")
        if self.lora_alpha * rank % self.r:
            raise UserInputError(f"{self.source}: lora_alpha {self.lora_alpha} at r {self.r} scales to a "
                                 f"fractional alpha at rank {rank}")
        return replace(self, r=rank, lora_alpha=self.lora_alpha * rank // self.r)


def touches_encoder(spec: LoraSpec) -> bool:
    """Whether the adapter changes the encoder (then its outputs cannot be cached; with encoder_top, those below it can)."""
    return spec.where in ("encoder", "both") or spec.encoder_top > 0


def encoder_cut_layer(spec: LoraSpec, encoder_layers: int) -> int | None:
    """The encoder layer before which an ``encoder_top`` adapter's frames are cut (None: after the encoder)."""
    try:
        return cut_layer_below_top(spec.encoder_top, encoder_layers)
    except ValueError as err:
        raise UserInputError(f"{spec.source}: {err}") from err


def _stacks(spec: LoraSpec) -> tuple[str, ...]:
    return ("encoder", "decoder") if spec.where == "both" else (spec.where,)


def target_regex(spec: LoraSpec, encoder_layers: int | None = None) -> str:
    """The full-name pattern, e.g. ``model\\.(?:decoder)\\.layers\\.\\d+\\.(?:[^.]+\\.)?(?:q_proj|v_proj)``.

    ``(?:[^.]+\\.)?`` is the sub-block (``self_attn``, ``encoder_attn``) or
    nothing (``fc1``/``fc2`` sit directly in the layer).  With ``encoder_top``
    (``encoder_layers``: the model's count) the top encoder layers join the
    decoder's: ``model\\.(?:decoder\\.layers\\.(?:\\d+)|encoder\\.layers\\.(?:4|5))\\. ...``.
    """
    layers = r"\d+" if spec.layers is None else "|".join(str(i) for i in sorted(set(spec.layers)))
    names = "|".join(re.escape(name) for name in spec.target_modules)
    if spec.encoder_top:
        if encoder_layers is None:
            raise ValueError("target_regex of an encoder_top adapter needs the model's encoder layer count")
        cut = encoder_cut_layer(spec, encoder_layers)
        top = "|".join(str(i) for i in range(cut, encoder_layers))
        return rf"model\.(?:decoder\.layers\.(?:{layers})|encoder\.layers\.(?:{top}))\.(?:[^.]+\.)?(?:{names})"
    stacks = "|".join(_stacks(spec))
    return rf"model\.(?:{stacks})\.layers\.(?:{layers})\.(?:[^.]+\.)?(?:{names})"


def _check_layers(spec: LoraSpec, model: torch.nn.Module) -> None:
    """A layer index the model does not have is a config error, not "fewer adapters"."""
    if spec.layers is None:
        return
    config = model.config
    for stack in _stacks(spec):
        count = getattr(config, f"{stack}_layers")
        missing = sorted(i for i in set(spec.layers) if i >= count)
        if missing:
            raise UserInputError(f"{spec.source}: layers {missing} do not exist: the {stack} has {count} layers (0..{count - 1})")


def build_lora_config(spec: LoraSpec, model: torch.nn.Module) -> LoraConfig:
    """The peft config for ``model``; raises :class:`UserInputError` if the target matches nothing."""
    _check_layers(spec, model)
    pattern = target_regex(spec, model.config.encoder_layers)
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    if not matched:
        raise UserInputError(
            f"{spec.source}: target_modules {list(spec.target_modules)} match no module of the {spec.where} "
            f"(pattern {pattern}); Whisper's linear layers are q_proj, k_proj, v_proj, out_proj, fc1, fc2"
        )
    logger.info("LoRA r=%d alpha=%d on %d modules matching %s", spec.r, spec.lora_alpha, len(matched), pattern)
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=pattern,
        bias="none",
    )


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> PeftModel:
    """Wrap ``model`` with fresh adapters; only the adapter weights require grad afterwards."""
    config = build_lora_config(spec, model)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as err:  # e.g. a name that matches a module type LoRA does not support
        raise UserInputError(f"{spec.source}: peft refused the LoRA config: {err}") from err
    return peft_model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def save_adapter(model: PeftModel, out_dir: str | os.PathLike[str], meta: Mapping[str, Any]) -> Path:
    """Write the adapter in peft's layout plus :data:`META_FILE`, replacing ``out_dir`` atomically.

    The directory loads with upstream ``PeftModel.from_pretrained(base, out_dir)``;
    ``lora_meta.json`` records what peft does not: language, data, training config, scores.
    """
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        with open(tmp / META_FILE, "w", encoding="utf-8") as handle:
            json.dump(dict(meta), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    return Path(out_dir)
