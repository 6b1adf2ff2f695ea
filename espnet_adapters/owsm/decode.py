"""Decoding with an OWSM base model and, optionally, one of our LoRA adapters.

In-process with ``espnet2.bin.s2t_inference.Speech2Text``: its command line
costs ~12 s of imports per call.  The language token is forced (``<hin>``...)
and the task is ``<asr>`` without timestamps, as in training.

An adapter directory (``exp/owsm_<size>_lora_<lang>_<tag>/``) holds the
adapter-only checkpoint and ``adapter.yaml``, which names the base model the
adapter was trained on; decoding it on another base is an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from espnet_adapters.owsm.build import attach_lora
from espnet_adapters.owsm.data import lang_token
from espnet_adapters.owsm.espnet_compat import prepare
from espnet_adapters.owsm.model import PretrainedOwsm
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

ADAPTER_META = "adapter.yaml"


@dataclass(frozen=True)
class DecodeOptions:
    """Search settings (Speech2Text's names)."""

    beam_size: int = 5
    ctc_weight: float = 0.0
    maxlenratio: float = 0.0
    device: str = "cpu"


def read_adapter_meta(adapter_dir: Path) -> dict[str, Any]:
    """``adapter.yaml`` of an adapter dir: base model, adapter_conf, checkpoint file name."""
    path = adapter_dir / ADAPTER_META
    if not path.is_file():
        raise UserInputError(f"{adapter_dir}: no {ADAPTER_META}: not an OWSM adapter dir of this recipe")
    meta = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("base_model", "adapter_conf", "checkpoint"):
        if key not in meta:
            raise UserInputError(f"{path}: no {key!r}")
    if not (adapter_dir / meta["checkpoint"]).is_file():
        raise UserInputError(f"{adapter_dir}: no {meta['checkpoint']}: its training has not finished (stage 6)")
    return meta


def load_speech2text(model: PretrainedOwsm, lang: str, adapter_dir: Path | None, options: DecodeOptions) -> Any:
    """A Speech2Text for ``lang`` on the pretrained base, with the adapter of ``adapter_dir`` attached."""
    prepare()
    from espnet2.bin.s2t_inference import Speech2Text

    speech2text = Speech2Text(
        s2t_train_config=str(model.config), s2t_model_file=str(model.model_file), device=options.device,
        beam_size=options.beam_size, ctc_weight=options.ctc_weight, maxlenratio=options.maxlenratio,
        lang_sym=lang_token(lang), task_sym="<asr>", predict_time=False,
    )
    if adapter_dir is not None:
        meta = read_adapter_meta(adapter_dir)
        if meta["base_model"] != model.name:
            raise UserInputError(
                f"{adapter_dir}: trained on base model {meta['base_model']!r}, not {model.name!r}")
        attach_lora(speech2text.s2t_model, meta["adapter_conf"], adapter_dir / meta["checkpoint"])
        speech2text.s2t_model.to(options.device)
    return speech2text


def transcribe(speech2text: Any, audio: np.ndarray) -> str:
    """The best hypothesis without special tokens (the S2T model pads/trims to its window)."""
    results = speech2text(audio.astype(np.float32, copy=False))
    return results[0][3].strip() if results else ""
