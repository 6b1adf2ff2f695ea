"""A run's adapters in one folder, with model cards and checksums; and reading such a folder back.

Layout of an export (``EXPORT_FORMAT``)::

    <out>/manifest.json        format, the base model (name, hub id, sha256 of config + weights),
                               per language the adapter's files and their sha256, the LID's,
                               the routing threshold chosen on dev, the languages' families
                               (hierarchical routing), the decoding options
    <out>/<lang>/              peft's adapter_config.json (base_model_name_or_path: the hub id),
                               adapter_model.safetensors, lora_meta.json, README.md (model card)
    <out>/lid/                 the LID (lid.json, lid_model.safetensors), when the run has one
    <out>/decoding.yaml        the decoding options the adapters were scored with
    <out>/README.md            an index: one line per adapter with its test WER / CER

The folder is written under a temporary name and renamed.  :func:`load_export`
checks every file against the manifest, so a half-copied or edited export is
refused, naming the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from espnet_adapters.lid.store import LID_META, LID_WEIGHTS
from espnet_adapters.publish.cards import CardFacts, render_card
from espnet_adapters.publish.licences import data_licences
from espnet_adapters.routing.results import read_json
from espnet_adapters.routing.tau import TAU_SELECTION, load_tau_selection
from espnet_adapters.scoring.results import ADAPTER_MODEL, ScoreEntry, compare_to_base, find_entries, variant_label
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.ct2 import sha256_file
from espnet_adapters.whisper.decode import DecodeOptions, search_record
from espnet_adapters.whisper.export import ADAPTER_FILES, base_record

EXPORT_FORMAT = "espnet-adapters-adapters/1"
MANIFEST = "manifest.json"
CARD = "README.md"
DECODING = "decoding.yaml"
LID_DIR = "lid"


@dataclass(frozen=True)
class Export:
    """What transcribe needs from an export folder (or from a recipe's dirs directly)."""

    adapters: dict[str, Path]
    lid_dir: Path | None
    whisper_model: str | None  # the base model's name as the run gave it
    tau: float | None
    top_k: int | None
    decode_config: Path | None
    families: dict[str, str] | None  # language -> family, for hierarchical routing


def hub_base_model(whisper_model: str) -> str:
    """The Hub id of the base: a Hub id as is; our offline conversion tools/models/<name> is openai/<name>."""
    if "/" in whisper_model and not Path(whisper_model).exists():
        return whisper_model
    return f"openai/{Path(whisper_model.rstrip('/')).name}"


def own_results(entries: Sequence[ScoreEntry], name: str, lang: str, variant: str) -> list[Any]:
    """The adapter ``name``'s scored decodings of its own language with the decoding ``variant``
    (scoring.results.variant_label), each paired with the base model's."""
    match = ADAPTER_MODEL.match(name)
    if match is None:
        raise UserInputError(f"{name}: not an adapter experiment name (<model>_lora_<lang>_<tag>)")
    base = {entry.decode_dir: entry for entry in entries
            if entry.model == match["base"] and entry.variant == variant}
    rows = []
    for entry in entries:
        if entry.model == name and entry.lang == lang and entry.variant == variant:
            if entry.decode_dir not in base:
                raise UserInputError(f"{name}/{entry.decode_dir}: no scored base-model decoding "
                                     f"{match['base']}/{entry.decode_dir} to compare with (run stages 7-8)")
            rows.append(compare_to_base(base[entry.decode_dir], entry))
    if not rows:
        raise UserInputError(f"{name}: no scored decoding of {lang} with the decoding options '{variant}' "
                             "(run stages 7-8 with them first)")
    return sorted(rows, key=lambda row: row.adapter.set_name)


def _copy(files: Sequence[Path], out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, out_dir / path.name)
    return {path.name: sha256_file(out_dir / path.name) for path in files}


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return sha256_file(path)


def export_adapters(
    adapters: Mapping[str, Path], exp_dir: Path, out_dir: Path, *, whisper_model: str, corpus: str,
    licences: Path, decode_options: DecodeOptions, lid_dir: Path | None = None, routing_dir: Path | None = None,
    top_k: int = 2, data_config_dir: Path = Path("conf/data"), families: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Collect ``adapters`` (language -> exp/<name>/adapter) with cards into ``out_dir``; the manifest."""
    entries = find_entries(exp_dir)
    variant = variant_label(search_record(decode_options))
    base = base_record(whisper_model)
    hub_id = hub_base_model(whisper_model)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest: dict[str, Any] = {"format": EXPORT_FORMAT, "base": base | {"hub_id": hub_id}, "adapters": {},
                                "lid": None, "routing": None,
                                "families": None if families is None else {lang: families[lang] for lang in adapters
                                                                           if lang in families}}
    index = ["# Adapters", "", f"Base model {hub_id}; decoding options in `{DECODING}` (results of the decoding "
             f"variant '{variant}').", "",
             "| language | adapter | test set | WER | CER | words correct | base WER |", "|---|---|---|---|---|---|---|"]
    for lang, adapter_dir in adapters.items():
        name = adapter_dir.parent.name
        files = [adapter_dir / file for file in ADAPTER_FILES if (adapter_dir / file).is_file()]
        if not (adapter_dir / "adapter_config.json").is_file():
            raise UserInputError(f"{adapter_dir}: no adapter_config.json; not a trained adapter")
        checksums = _copy(files, tmp / lang)
        config_path = tmp / lang / "adapter_config.json"
        config = read_json(config_path)
        trained_on = config.get("base_model_name_or_path")
        config["base_model_name_or_path"] = hub_id  # so the folder loads from the Hub as is
        checksums["adapter_config.json"] = _write(config_path, json.dumps(config, indent=2) + "\n")
        results = own_results(entries, name, lang, variant)
        facts = CardFacts(lang, name, hub_id, base["sha256"], data_licences(licences, corpus, lang, data_config_dir),
                          results, read_json(adapter_dir.parent / "train_stats.json"), config)
        checksums[CARD] = _write(tmp / lang / CARD, render_card(facts))
        manifest["adapters"][lang] = {"name": name, "trained_on": trained_on, "files": checksums,
                                      "results": {row.adapter.set_name: {"wer": row.adapter.wer, "cer": row.adapter.cer,
                                                                         "corr": row.adapter.corr} for row in results}}
        index += [f"| {lang} | {name} | {row.adapter.set_name} | {row.adapter.wer:.1f} | {row.adapter.cer:.1f} | "
                  f"{row.adapter.corr:.1f} | {row.base.wer:.1f} |" for row in results]
    if lid_dir is not None:
        manifest["lid"] = {"files": _copy([lid_dir / LID_META, lid_dir / LID_WEIGHTS], tmp / LID_DIR)}
    if routing_dir is not None and (routing_dir / TAU_SELECTION).is_file():
        manifest["routing"] = {"tau": load_tau_selection(routing_dir / TAU_SELECTION).chosen, "top_k": top_k}
    manifest["decoding"] = _write(tmp / DECODING, yaml.safe_dump(
        {key: list(value) if isinstance(value, tuple) else value
         for key, value in decode_options.as_dict().items() if key != "lang_mode"}, sort_keys=False))
    (tmp / CARD).write_text("\n".join(index) + "\n", encoding="utf-8")
    with atomic_write(tmp / MANIFEST) as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)  # never a moment without a complete export, nor a mix of two
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def _verify(root: Path, sub: str, files: Mapping[str, str], manifest_path: Path) -> None:
    for name, digest in files.items():
        path = root / sub / name
        if not path.is_file():
            raise UserInputError(f"{manifest_path}: lists {sub}/{name}, which is missing")
        if sha256_file(path) != digest:
            raise UserInputError(f"{path}: its sha256 differs from {manifest_path}'s (edited or half-copied export)")


def load_export(root: Path) -> Export:
    """An export folder, every file checked against its manifest."""
    path = root / MANIFEST
    manifest = read_json(path)
    if manifest.get("format") != EXPORT_FORMAT or not isinstance(manifest.get("adapters"), dict):
        raise UserInputError(f"{path}: not an {EXPORT_FORMAT} manifest (export_adapters writes one)")
    adapters = {}
    for lang, entry in manifest["adapters"].items():
        _verify(root, lang, entry.get("files") or {}, path)
        adapters[lang] = root / lang
    lid = manifest.get("lid")
    if lid is not None:
        _verify(root, LID_DIR, lid.get("files") or {}, path)
    decoding = root / DECODING
    if decoding.is_file() and sha256_file(decoding) != manifest.get("decoding"):
        raise UserInputError(f"{decoding}: its sha256 differs from {path}'s")
    routing = manifest.get("routing") or {}
    return Export(adapters, root / LID_DIR if lid is not None else None, manifest["base"].get("whisper_model"),
                  routing.get("tau"), routing.get("top_k"), decoding if decoding.is_file() else None,
                  manifest.get("families"))
