"""Merge a LoRA adapter into its base Whisper and export the result for CTranslate2.

An export directory (``export_adapter --out_dir OUT``) holds:

  manifest.json       what it was made from: the base model (name, sha256 over its
                      ``config.json`` and weights files), the adapter (directory,
                      sha256 over its files, language, encoder_trim), one entry per
                      CTranslate2 model (quantization, size and sha256 of
                      ``model.bin``) and the library versions
  transformers/       the merged model as a plain transformers directory (fp32
                      safetensors, generation config, tokenizer, feature extractor):
                      loads with ``--whisper_model OUT/transformers``
  ct2_<quantization>/ the merged model converted by ``ctranslate2``'s
                      ``TransformersConverter`` (``model.bin``, ``config.json``,
                      ``tokenizer.json``, ``vocabulary.json``, and the
                      ``preprocessor_config.json`` faster-whisper reads), one per
                      ``--quantization`` exported: int8, float32, ...
  adapter/            a copy of the adapter's small files (``adapter_config.json``,
                      ``lora_meta.json``): the decoder checks ``encoder_trim`` on them

Without ``--adapter_dir`` the base model itself is exported (no merge), so the
base is decoded by the same backend as its adapters.

The manifest's ``signature`` is a sha256 of what the export *is* (export format,
base checksum, adapter checksum), never of paths: an export whose signature
matches and that holds the requested quantization is left alone; one with
another signature (a retrained adapter, another base) is rebuilt whole under a
temporary name and swapped in; a new quantization of a current export is
converted from its ``transformers/`` dir, without merging again.

A CTranslate2 model carries the base weights inside, so decoding it with
another ``--whisper_model`` (whose feature extractor and tokenizer the decoder
uses, and against which results are compared) would silently mix models:
:func:`check_export` refuses an export whose base checksum is not the decoding
model's, naming the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import espnet_adapters
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir, atomic_write
from espnet_adapters.whisper.ct2 import sha256_file
from espnet_adapters.whisper.encoder_cache import model_files
from espnet_adapters.whisper.inputs import adapter_cut_layer, adapter_encoder_span, adapter_encoder_trim
from espnet_adapters.whisper.lora import META_FILE
from espnet_adapters.whisper.model import load_whisper, resolve_model

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRANSFORMERS_DIR = "transformers"
ADAPTER_COPY_DIR = "adapter"
EXPORT_FORMAT = 1  # part of the signature: a layout change rebuilds every export
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int16", "float16", "float32")
ADAPTER_SMALL_FILES = ("adapter_config.json", META_FILE)
ADAPTER_FILES = (*ADAPTER_SMALL_FILES, "adapter_model.safetensors", "adapter_model.bin")
CT2_COPY_FILES = ("tokenizer.json",)


def ct2_dir_name(quantization: str) -> str:
    """The export's subdirectory of one quantization: ``ct2_int8``."""
    return f"ct2_{quantization}"


def files_sha256(paths: Sequence[Path], root: Path) -> str:
    """One sha256 over files: each one's name relative to ``root`` and its content's sha256, in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode("utf-8"))
    return digest.hexdigest()


def base_record(whisper_model: str) -> dict[str, Any]:
    """The base model's entry of a manifest: its name, where it was read, the sha256 of config + weights."""
    config, weights = model_files(whisper_model)
    files = [config, *weights]
    return {
        "whisper_model": whisper_model,
        "source": resolve_model(whisper_model),
        "files": [path.name for path in files],
        "sha256": files_sha256(files, config.parent),
    }


def adapter_record(adapter_dir: Path) -> dict[str, Any]:
    """The adapter's entry of a manifest: its dir, the sha256 over its files, its language and encoder_trim.

    The files are peft's config and weights and our ``lora_meta.json`` (its encoder_trim
    decides how the export may be decoded), not peft's README.md model card.
    """
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserInputError(f"{adapter_dir}: no adapter_config.json; not a peft adapter directory")
    files = sorted(adapter_dir / name for name in ADAPTER_FILES if (adapter_dir / name).is_file())
    meta_path = adapter_dir / META_FILE
    lang = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise UserInputError(f"{meta_path}: unreadable adapter metadata: {err}") from err
        lang = meta.get("lang") if isinstance(meta, dict) else None
    return {
        "dir": str(adapter_dir),
        "files": [path.relative_to(adapter_dir).as_posix() for path in files],
        "sha256": files_sha256(files, adapter_dir),
        "lang": lang,
        "encoder_trim": adapter_encoder_trim(adapter_dir),
    }


def export_signature(base: dict[str, Any], adapter: dict[str, Any] | None) -> str:
    """What an export is, by content: format, base checksum, adapter checksum (None: the base itself)."""
    key = {"format": EXPORT_FORMAT, "base": base["sha256"], "adapter": None if adapter is None else adapter["sha256"]}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()


def _versions() -> dict[str, str]:
    import ctranslate2
    import peft
    import transformers

    return {"espnet_adapters": espnet_adapters.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "ctranslate2": ctranslate2.__version__}


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest.json, checked for the keys the decoder relies on; bad content names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file (not an export_adapter output?)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: unreadable export manifest: {err}") from err
    if (not isinstance(data, dict) or not isinstance(data.get("base"), dict)
            or not isinstance(data["base"].get("sha256"), str) or not isinstance(data.get("ct2"), dict)
            or not isinstance(data.get("signature"), str)):
        raise UserInputError(f"{path}: not an export manifest (needs signature, base.sha256 and ct2)")
    return data


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    with atomic_write(directory / MANIFEST) as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def save_merged(whisper_model: str, adapter_dir: Path | None, out_dir: Path) -> None:
    """The base with the adapter merged (fp32, :func:`load_whisper`) and its processor, in transformers' layout."""
    model, processor = load_whisper(whisper_model, torch.device("cpu"), adapter_dir, merge=True)
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))


def convert_to_ct2(transformers_dir: Path, out_dir: Path, quantization: str) -> dict[str, Any]:
    """``TransformersConverter`` on ``transformers_dir`` into ``out_dir`` (atomically); its manifest entry."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    with atomic_dir(out_dir) as tmp:
        converter = ctranslate2.converters.TransformersConverter(str(transformers_dir),
                                                                 copy_files=list(CT2_COPY_FILES))
        try:
            converter.convert(str(tmp), quantization=quantization, force=True)
        except (ValueError, RuntimeError) as err:
            raise UserInputError(f"{transformers_dir}: CTranslate2 cannot convert it ({quantization}): {err}") from err
        # faster-whisper reads the number of mel bins from here; transformers 5 keeps it in processor_config.json
        WhisperFeatureExtractor.from_pretrained(str(transformers_dir)).to_json_file(
            str(tmp / "preprocessor_config.json"))
        model_bin = tmp / "model.bin"
        entry = {"quantization": quantization, "model_bin_bytes": model_bin.stat().st_size,
                 "model_bin_sha256": sha256_file(model_bin)}
    logger.info("converted %s to %s (%s, %d bytes)", transformers_dir, out_dir, quantization, entry["model_bin_bytes"])
    return entry


@dataclass(frozen=True)
class ExportResult:
    """Where an export's CTranslate2 model is, and whether anything was (re)built."""

    ct2_dir: Path
    manifest: dict[str, Any]
    action: str  # "built", "added" (a quantization to a current export) or "up to date"


def export_adapter(
    whisper_model: str, adapter_dir: Path | None, out_dir: Path, quantization: str, force: bool = False
) -> ExportResult:
    """Merge ``adapter_dir`` into ``whisper_model`` and export it to ``out_dir`` (module doc); idempotent."""
    if quantization not in QUANTIZATIONS:
        raise UserInputError(f"--quantization {quantization}: expected one of {', '.join(QUANTIZATIONS)}")
    if adapter_dir is not None and adapter_cut_layer([adapter_dir]) is not None \
            and adapter_encoder_trim(adapter_dir) is not None:
        raise UserInputError(
            f"{adapter_dir}: the adapter's top encoder layers run on the speech frames only (encoder_cut_layer "
            "in lora_meta.json); CTranslate2 runs the whole encoder on the 30 s window: decode it with the hf backend"
        )
    if adapter_dir is not None and adapter_encoder_span(adapter_dir) == "speech":
        raise UserInputError(
            f"{adapter_dir}: the adapter was trained on the encoder run on the speech only (encoder_span speech in "
            "lora_meta.json); CTranslate2 runs its encoder on the 30 s window: decode it with the hf backend"
        )
    base = base_record(whisper_model)
    adapter = None if adapter_dir is None else adapter_record(adapter_dir)
    signature = export_signature(base, adapter)
    name = ct2_dir_name(quantization)
    manifest_path = out_dir / MANIFEST
    current = None
    if manifest_path.is_file() and not force:
        existing = read_manifest(manifest_path)
        if existing["signature"] == signature and (out_dir / TRANSFORMERS_DIR / "config.json").is_file():
            current = existing
    if current is not None:
        if name in current["ct2"] and (out_dir / name / "model.bin").is_file():
            logger.info("%s: up to date (%s, signature %s)", out_dir, name, signature[:12])
            return ExportResult(out_dir / name, current, "up to date")
        current["ct2"][name] = convert_to_ct2(out_dir / TRANSFORMERS_DIR, out_dir / name, quantization)
        current["versions"] = _versions()
        _write_manifest(out_dir, current)
        return ExportResult(out_dir / name, current, "added")
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "signature": signature, "base": base, "adapter": adapter,
                                "ct2": {}, "versions": _versions()}
    with atomic_dir(out_dir) as tmp:
        save_merged(whisper_model, adapter_dir, tmp / TRANSFORMERS_DIR)
        manifest["ct2"][name] = convert_to_ct2(tmp / TRANSFORMERS_DIR, tmp / name, quantization)
        if adapter_dir is not None:
            (tmp / ADAPTER_COPY_DIR).mkdir()
            for small in ADAPTER_SMALL_FILES:
                if (adapter_dir / small).is_file():
                    shutil.copyfile(adapter_dir / small, tmp / ADAPTER_COPY_DIR / small)
        _write_manifest(tmp, manifest)
    logger.info("exported %s%s to %s (signature %s)", whisper_model,
                "" if adapter_dir is None else f" + {adapter_dir} (merged)", out_dir, signature[:12])
    return ExportResult(out_dir / name, manifest, "built")


@dataclass(frozen=True)
class CheckedExport:
    """A CTranslate2 dir to decode with, and what its manifest says (None: a CT2 dir made elsewhere)."""

    ct2_dir: Path
    manifest: dict[str, Any] | None
    quantization: str | None

    @property
    def adapter_copy(self) -> Path | None:
        """The export's copy of the adapter's small files (for the encoder_trim check), if it has an adapter."""
        if self.manifest is None or self.manifest.get("adapter") is None:
            return None
        return self.ct2_dir.parent / ADAPTER_COPY_DIR


def check_export(ct2_dir: Path, whisper_model: str) -> CheckedExport:
    """Check that ``ct2_dir`` may be decoded with ``whisper_model``'s feature extractor and tokenizer.

    An export's ``ct2_<q>`` dir (``manifest.json`` beside it) must list itself in the manifest
    and come from the very base ``whisper_model`` is (same sha256), else a :class:`UserInputError`
    names the manifest.  A CTranslate2 dir without a manifest (the faster-whisper base
    model) cannot be checked: it is decoded with a warning.
    """
    if not (ct2_dir / "model.bin").is_file():
        raise UserInputError(f"{ct2_dir}: no model.bin; not a CTranslate2 model directory (--ct2_dir)")
    manifest_path = ct2_dir.parent / MANIFEST
    if not manifest_path.is_file():
        logger.warning("%s: no %s beside it: cannot check that it was made from %s", ct2_dir, manifest_path,
                       whisper_model)
        return CheckedExport(ct2_dir, None, None)
    manifest = read_manifest(manifest_path)
    entry = manifest["ct2"].get(ct2_dir.name)
    if not isinstance(entry, dict):
        raise UserInputError(f"{manifest_path}: lists no {ct2_dir.name} (has {', '.join(manifest['ct2']) or 'none'});"
                             " re-run export_adapter")
    base = base_record(whisper_model)
    if manifest["base"]["sha256"] != base["sha256"]:
        raise UserInputError(
            f"{manifest_path}: exported from base {manifest['base'].get('whisper_model')} (sha256 "
            f"{manifest['base']['sha256'][:12]}), but decoding with --whisper_model {whisper_model} (sha256 "
            f"{base['sha256'][:12]}): export the adapter again on this base, or decode with the base it was "
            "exported from")
    return CheckedExport(ct2_dir, manifest, entry.get("quantization"))
