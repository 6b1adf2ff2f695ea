"""A trained LID model on disk: ``lid_model.safetensors`` + ``lid.json``, beside the adapters.

``lid.json`` holds what the weights alone cannot say: the labels in the order
of the output units, the config that rebuilds the module, ``d_model``, the base
model whose encoder produced the training frames, the majority training label
(the baseline of the evaluation) and the dev accuracy.  It is written after
the weights, so its presence means the directory is complete.

The labels are checked on loading: a router whose LID knows {hi, it, pa}
while adapters exist for {hi, it, pa, te} would never pick Telugu, and one
whose LID answers a language without adapter would have nowhere to send it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
from safetensors import SafetensorError

from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.models import LidModel
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.model import resolve_model

logger = logging.getLogger(__name__)

LID_WEIGHTS = "lid_model.safetensors"
LID_META = "lid.json"
LID_FORMAT = "espnet-adapters-lid/1"


@dataclass
class LoadedLid:
    """A LID model ready for inference (eval mode, CPU) and its ``lid.json``."""

    model: LidModel
    labels: list[str]
    meta: dict[str, Any]


def save_lid(out_dir: Path, model: LidModel, labels: Sequence[str], d_model: int, meta: Mapping[str, Any]) -> None:
    """Write the weights, then ``lid.json`` (labels, config, d_model and ``meta``), each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_write(out_dir / LID_WEIGHTS, "wb") as handle:
        handle.write(safetensors.torch.save(state))
    record = {"format": LID_FORMAT, "labels": list(labels), "d_model": d_model,
              "config": model.config.as_dict(), "config_file": model.config.source,
              "temperature": float(model.temperature), **meta}
    with atomic_write(out_dir / LID_META) as handle:
        json.dump(record, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    logger.info("wrote %s and %s (labels %s)", out_dir / LID_WEIGHTS, LID_META, " ".join(labels))


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise UserInputError(f"{path.parent}: no {LID_META}; not a trained LID directory (run train_lid)") from err
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != LID_FORMAT:
        raise UserInputError(f"{path}: not a {LID_FORMAT} file")
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(label, str) for label in labels):
        raise UserInputError(f"{path}: 'labels' must be a list of at least two language codes, got {labels!r}")
    return meta


def check_labels(path: Path, labels: Sequence[str], expected: Sequence[str]) -> None:
    """The LID's labels must be exactly the adapters' languages (order aside)."""
    if set(labels) == set(expected):
        return
    missing, extra = sorted(set(expected) - set(labels)), sorted(set(labels) - set(expected))
    raise UserInputError(
        f"{path}: LID labels [{', '.join(labels)}] do not match the adapters present [{', '.join(sorted(expected))}]"
        f" (no LID label for: {', '.join(missing) or '-'}; no adapter for: {', '.join(extra) or '-'});"
        " retrain the LID (train_lid) on the adapters' languages"
    )


def load_lid(lid_dir: Path, expected_labels: Sequence[str] | None = None) -> LoadedLid:
    """Rebuild the model saved by :func:`save_lid`; check its labels against ``expected_labels`` when given."""
    meta_path = Path(lid_dir) / LID_META
    meta = _read_meta(meta_path)
    labels: list[str] = meta["labels"]
    if expected_labels is not None:
        check_labels(meta_path, labels, expected_labels)
    try:
        config = LidConfig.from_dict(meta["config"])
        model = LidModel(config, int(meta["d_model"]), len(labels))
        model.load_state_dict(safetensors.torch.load_file(str(Path(lid_dir) / LID_WEIGHTS)))
        # A LID saved before temperature scaling existed was not calibrated: its temperature is 1.
        temperature = float(meta.get("temperature", 1.0))
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        model.temperature.fill_(temperature)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as err:
        raise UserInputError(f"{lid_dir}: cannot rebuild the LID model from {LID_META} + {LID_WEIGHTS}: {err}") from err
    return LoadedLid(model.eval(), labels, meta)


def lid_base_model(lid_dir: Path, lid: LoadedLid, whisper_model: str | None = None) -> str:
    """``whisper_model`` (default: lid.json's base model), which must be the model the LID was trained on.

    The LID classifies that encoder's frames: another model's are meaningless to it.
    """
    trained_on = str(lid.meta.get("base_model"))
    name = whisper_model or trained_on
    if resolve_model(name) != trained_on:
        raise UserInputError(f"{lid_dir}: the LID was trained on the encoder of {trained_on}, not {resolve_model(name)}")
    return name
