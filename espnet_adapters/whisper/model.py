"""Where a Whisper model comes from, and how it is loaded for a job.

``--whisper_model`` takes three kinds of names, resolved in this order:

1. a short name of a model converted by ``tools/install.sh`` under
   ``tools/models/`` (``whisper-base``, the offline default);
2. a local directory in transformers' layout (a converted, merged or downloaded model);
3. a Hugging Face Hub id (``openai/whisper-small``, ``openai/whisper-large-v3``):
   real users have the Hub.  ``path.sh`` sets ``HF_HUB_OFFLINE=1`` so that nothing
   is fetched by accident; run with ``HF_HUB_OFFLINE=0`` to allow the download.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import (
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import language_token

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "tools" / "models"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # what peft's save_pretrained writes
_ENCODER_PARAM = re.compile(r"(^|\.)encoder\.")  # model.encoder.*, not decoder ...encoder_attn.*


def resolve_model(name: str, models_dir: Path = MODELS_DIR) -> str:
    """Map a ``--whisper_model`` value to a local directory or a Hub id."""
    local = models_dir / name
    if (local / "config.json").exists():
        return str(local)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").exists():
            raise UserInputError(f"{name}: a directory without config.json is not a transformers model")
        return str(Path(name).resolve())
    if Path(name).is_absolute() or name.startswith(("./", "../", "~")) or name.count("/") > 1:
        raise UserInputError(f"--whisper_model {name}: no such directory (a Hub id is owner/name)")
    if "/" not in name:
        raise UserInputError(
            f"--whisper_model {name}: not under {models_dir} (run tools/install.sh), not a directory, "
            "and not a Hub id like openai/whisper-small"
        )
    return name


def pick_device(ngpu: int) -> torch.device:
    """CUDA when the job was given GPUs and one is visible; the CPU otherwise."""
    if ngpu > 0:
        if not torch.cuda.is_available():
            raise UserInputError(f"--ngpu {ngpu} but torch sees no CUDA device (torch {torch.__version__})")
        return torch.device("cuda")
    return torch.device("cpu")


def load_error(source: str, err: Exception) -> UserInputError:
    """A load failure as a user error, with the hint that matters offline."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") == "1"
    hint = " Hub access is off (HF_HUB_OFFLINE=1): set HF_HUB_OFFLINE=0 to download." if offline else ""
    return UserInputError(f"cannot load Whisper model {source!r}: {err}.{hint}")


def load_feature_extractor(name: str) -> WhisperFeatureExtractor:
    """Only the feature extractor of ``--whisper_model``: feature dumps never need the weights."""
    source = resolve_model(name)
    try:
        return WhisperFeatureExtractor.from_pretrained(source)
    except OSError as err:
        raise load_error(source, err) from err


def unknown_languages(name: str, langs: Sequence[str]) -> list[str]:
    """The codes of ``langs`` that ``--whisper_model``'s tokenizer has no language token ``<|xx|>`` for."""
    source = resolve_model(name)
    try:
        tokenizer = WhisperTokenizer.from_pretrained(source)
    except OSError as err:
        raise load_error(source, err) from err
    return [lang for lang in langs if language_token(tokenizer, lang) is None]


def adapter_touches_encoder(adapter_dir: Path) -> bool:
    """Whether a saved peft adapter changes any encoder weight.

    Decided from the weight names the adapter stores, not from
    ``target_modules``: a plain list like ``["q_proj", "v_proj"]`` matches the
    encoder's attention too, and ``modules_to_save`` can name encoder modules.
    The decoder's cross-attention (``encoder_attn``) reads the encoder outputs
    but does not change them, so it does not count.
    """
    return any(_ENCODER_PARAM.search(key) for key in adapter_weight_names(adapter_dir))


def adapter_weight_names(adapter_dir: Path) -> list[str]:
    """The names of the weights a saved peft adapter stores, read from the header only."""
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise UserInputError(f"{adapter_dir}: no {ADAPTER_WEIGHTS}; not a peft adapter saved with safetensors")
    with safe_open(str(weights), framework="pt") as handle:
        return list(handle.keys())


def load_whisper(
    name: str, device: torch.device, adapter_dir: Path | None = None, merge: bool = False
) -> tuple[WhisperForConditionalGeneration | PeftModel, WhisperProcessor]:
    """Load model (and optionally a LoRA adapter) and processor, in eval mode.

    The base is loaded in fp32 and the adapter attached (and merged, with
    ``merge``) before the cast to the job's dtype, fp16 on CUDA and fp32 on the
    CPU, so a merge never rounds the LoRA update onto low-precision weights.
    An adapter trained on another base (another size: other d_model or layer
    count) fails with a message naming ``adapter_dir`` instead of a wall of
    state-dict size mismatches.
    """
    source = resolve_model(name)
    dtype = job_dtype(device)
    try:
        processor = WhisperProcessor.from_pretrained(source)
        load_dtype = dtype if adapter_dir is None else torch.float32
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=load_dtype)
    except OSError as err:
        raise load_error(source, err) from err
    if adapter_dir is not None:
        model = attach_adapter(model, source, adapter_dir)
        model = model.merge_and_unload() if merge else model
    logger.info("loaded %s%s (%s, %s)", source, _adapter_note(adapter_dir, merge), device, dtype)
    return model.to(device, dtype).eval(), processor


def job_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA (half the memory and bandwidth), float32 on the CPU (no fast float16 kernels there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


def attach_adapter(
    model: WhisperForConditionalGeneration | PeftModel, source: str, adapter_dir: Path, adapter_name: str = "default"
) -> PeftModel:
    """Load a peft adapter under ``adapter_name`` with the upstream loaders.

    ``PeftModel.from_pretrained`` on a plain model, ``load_adapter`` on a
    ``PeftModel`` (one more adapter next to the loaded ones, as routing needs).
    """
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise UserInputError(f"{adapter_dir}: no adapter_config.json; not a peft adapter directory")
    trained_on = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if trained_on and Path(trained_on).name != Path(source).name:
        logger.warning("%s was trained on %s, decoding with %s", adapter_dir, trained_on, source)
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter_dir), adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name)
    except (RuntimeError, ValueError, KeyError) as err:
        detail = str(err).strip().splitlines()
        raise UserInputError(
            f"{adapter_dir}: adapter does not fit the base model {source} (made for another model size?):"
            f" {' '.join(line.strip() for line in detail[:2])}"
        ) from err


def _adapter_note(adapter_dir: Path | None, merge: bool) -> str:
    if adapter_dir is None:
        return ""
    return f" + adapter {adapter_dir} ({'merged' if merge else 'unmerged'})"
