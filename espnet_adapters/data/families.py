"""Language families (``conf/families.yaml``): ISO 639-1 code -> family name.

One flat yaml mapping, e.g. ``hi: Indo-Aryan``.  Read with line numbers (yaml's node marks),
so a bad entry or a code given twice is an error naming the file and line; a language missing
from the file has no family (callers say so; nothing is guessed).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import read_yaml

_CODE = re.compile(r"[a-z]{2,3}")


def read_families(path: Path) -> dict[str, str]:
    """Language code -> family from ``path``."""
    root = read_yaml(path, nodes=True)
    if not isinstance(root, yaml.MappingNode) or not root.value:
        raise UserInputError(f"{path}: expected a mapping of language codes to families (hi: Indo-Aryan)")
    families: dict[str, str] = {}
    for key, value in root.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode) or not _CODE.fullmatch(str(key.value)):
            raise UserInputError(f"{path}:{line}: {key.value!r} is not a language code (2-3 lowercase letters)")
        if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
            raise UserInputError(f"{path}:{line}: {key.value}: expected a family name")
        if key.value in families:
            raise UserInputError(f"{path}:{line}: {key.value} is given twice")
        families[str(key.value)] = str(value.value).strip()
    return families
