"""Yaml-backed configs: one mechanism for every ``conf/*/*.yaml`` dataclass.

A config is a frozen dataclass that inherits :class:`YamlConfig` and is filled
from yaml by :func:`load_yaml_config`, which rejects unknown keys: a misspelt
``learning_rate:`` for ``lr:`` would otherwise be ignored silently and the run
would use the default.  Values are checked against the field types, and
numbers are converted: PyYAML reads ``5e-4`` (no dot) as the *string* "5e-4",
which would fail deep inside torch.  Errors name the file.

Used by ``TrainConfig`` (``conf/train``), ``LoraSpec`` (``conf/lora``) and
``LidConfig`` (``conf/lid``)::

    @dataclass(frozen=True)
    class MyConfig(YamlConfig):
        steps: int = 10
        source: str = "<default MyConfig>"  # the yaml file, for error messages

    MyConfig.from_yaml("conf/my.yaml").as_dict()  # {"steps": ...}, without source
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from espnet_adapters.utils.cli import UserInputError

ConfigT = TypeVar("ConfigT")

# A config dataclass may have this field: it is filled with the yaml file's path
# (for error messages that name the file), never read from the yaml itself.
SOURCE_FIELD = "source"


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotated type ``hint`` (int, float, bool, str, tuple[X, ...], X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _coerce(key, value, inner)
    if typing.get_origin(hint) is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(key, item, args[0]) for item in items)
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif hint in (int, bool, str) and type(value) is hint:
        return value
    raise ValueError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def read_yaml(path: str | os.PathLike[str], *, nodes: bool = False) -> Any:
    """The yaml document in ``path`` (``nodes``: its node graph, whose marks give line numbers);
    an unreadable file or invalid yaml is an error naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.compose(handle) if nodes else yaml.safe_load(handle)
    except OSError as err:
        raise UserInputError(f"{path}: cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise UserInputError(f"{path}: cannot read: not UTF-8 ({err})") from err
    except yaml.YAMLError as err:
        raise UserInputError(f"{path}: invalid yaml: {err}") from err


def load_yaml_config(path: str | os.PathLike[str], cls: type[ConfigT]) -> ConfigT:
    """Build dataclass ``cls`` from the yaml mapping in ``path``; errors name the file.

    Lists become tuples, so the configs stay hashable and frozen dataclasses stay immutable.
    An empty file is an error: a config with nothing in it is a mistake, not "all defaults".
    ``cls.__post_init__`` may raise ``ValueError`` for values out of range.
    """
    raw = read_yaml(path)
    if raw is None:  # an empty file (or only comments) is a mistake, not "all defaults"
        raise UserInputError(f"{path}: empty; a config names at least one setting (see conf/ for examples)")
    return config_from_mapping(cls, raw, str(path))


def config_from_mapping(cls: type[ConfigT], raw: Any, where: str) -> ConfigT:
    """Build dataclass ``cls`` from the mapping ``raw`` (a yaml document or a section of one).

    ``where`` names it in errors (the file, or ``file: section``) and fills the
    :data:`SOURCE_FIELD` of a class that has one.
    """
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping of options, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)} - {SOURCE_FIELD}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise UserInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        values = {key: _coerce(key, value, hints[key]) for key, value in raw.items()}
        if SOURCE_FIELD in hints:
            values[SOURCE_FIELD] = where
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{where}: {err}") from err


class YamlConfig:
    """``from_yaml`` and ``as_dict`` for a (frozen) dataclass config; it adds no field."""

    @classmethod
    def from_yaml(cls: type[ConfigT], path: str | os.PathLike[str]) -> ConfigT:
        """The config in ``path`` (:func:`load_yaml_config`)."""
        return load_yaml_config(path, cls)

    def as_dict(self) -> dict[str, Any]:
        """The options only, without the file name: what a run records and compares."""
        values = dataclasses.asdict(self)  # type: ignore[call-overload]
        values.pop(SOURCE_FIELD, None)
        return values
