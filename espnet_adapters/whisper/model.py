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

import logging
import os
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[2] / "tools" / "models"


def resolve_model(name: str, models_dir: Path = MODELS_DIR) -> str:
    """Map a ``--whisper_model`` value to a local directory or a Hub id."""
    local = models_dir / name
    if (local / "config.json").exists():
        return str(local)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").exists():
            raise UserInputError(f"{name}: a directory without config.json is not a transformers model")
        return str(Path(name).resolve())
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


def load_whisper(name: str, device: torch.device) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load model and processor, in fp16 on CUDA and fp32 on the CPU, in eval mode."""
    source = resolve_model(name)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        processor = WhisperProcessor.from_pretrained(source)
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") == "1"
        hint = " Hub access is off (HF_HUB_OFFLINE=1): set HF_HUB_OFFLINE=0 to download." if offline else ""
        raise UserInputError(f"cannot load Whisper model {source!r}: {err}.{hint}") from err
    logger.info("loaded %s (%s, %s)", source, device, dtype)
    return model.to(device).eval(), processor
