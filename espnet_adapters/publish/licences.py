"""The training data's licence, per corpus and language, from ``conf/export/data_licences.yaml``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espnet_adapters.data.prepare import load_data_config
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import read_yaml

LICENCE_KEYS = {"license", "license_name", "license_link"}


@dataclass(frozen=True)
class DataLicence:
    """One corpus's data, as a model card names it."""

    corpus: str
    description: str
    license: str
    license_name: str | None = None
    license_link: str | None = None


def _entry(path: Path, corpus: str, lang: str, value: Any) -> DataLicence:
    if not isinstance(value, dict) or not isinstance(value.get("description"), str):
        raise UserInputError(f"{path}: {corpus}: expected a mapping with a 'description' string")
    chosen = value.get(lang, value.get("default"))
    if chosen is None:
        raise UserInputError(f"{path}: {corpus}: no licence for language {lang} and no 'default'")
    if not isinstance(chosen, dict) or not isinstance(chosen.get("license"), str) or set(chosen) - LICENCE_KEYS:
        raise UserInputError(f"{path}: {corpus}.{lang if lang in value else 'default'}: expected "
                             f"{{license: ID[, license_name: ..., license_link: ...]}}, got {chosen!r}")
    if chosen["license"] == "other" and not chosen.get("license_name"):
        raise UserInputError(f"{path}: {corpus}: license 'other' needs a license_name")
    return DataLicence(corpus, value["description"], chosen["license"], chosen.get("license_name"),
                       chosen.get("license_link"))


def data_licences(path: Path, corpus: str, lang: str, data_config_dir: Path = Path("conf/data")) -> list[DataLicence]:
    """The licences of the corpora an adapter of ``lang`` was trained on (``mix``: those of conf/data/<lang>.yaml)."""
    table = read_yaml(path)
    if not isinstance(table, dict):
        raise UserInputError(f"{path}: expected a mapping of corpus -> licences")
    corpora = [corpus]
    if corpus == "mix":
        corpora = list(load_data_config(data_config_dir / f"{lang}.yaml")["corpora"])
    missing = [name for name in corpora if name not in table]
    if missing:
        raise UserInputError(f"{path}: no entry for corpus {', '.join(missing)}: add its description and licence")
    return [_entry(path, name, lang, table[name]) for name in corpora]
