"""LID posteriors files (``utt hi:0.91 it:0.05 ...``), as eval_lid writes and route_decode and the report read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from espnet_adapters.data.kaldi import read_map_lines
from espnet_adapters.utils.cli import UserInputError


def no_adapter_error(where: str, utt: str, lang: str, languages: Sequence[str]) -> UserInputError:
    given = ", ".join(languages)
    return UserInputError(f"{where}: {utt}: no adapter for language {lang!r} (--adapter given for {given})")


def _probability(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None  # also refuses nan


def read_posteriors(path: Path, utts: Sequence[str], languages: Sequence[str]) -> torch.Tensor:
    """(len(utts), len(languages)) posteriors from ``utt lang:p lang:p ...`` lines; absent languages are 0."""
    lines = read_map_lines(path)
    missing = [utt for utt in utts if utt not in lines]
    if missing:
        raise UserInputError(f"{path}: no posteriors for {len(missing)} utterance(s), e.g. {missing[0]}")
    column = {lang: k for k, lang in enumerate(languages)}
    matrix = torch.zeros(len(utts), len(languages))
    for row, utt in enumerate(utts):
        number, value = lines[utt]
        where, seen = f"{path}:{number}", set()
        for field in value.split():
            lang, _, text = field.partition(":")
            probability = _probability(text)
            if probability is None:
                raise UserInputError(f"{where}: {utt}: expected lang:probability in [0, 1], got {field!r}")
            if lang not in column:
                raise no_adapter_error(where, utt, lang, languages)
            if lang in seen:
                raise UserInputError(f"{where}: {utt}: language {lang} given twice")
            seen.add(lang)
            matrix[row, column[lang]] = probability
        if not matrix[row].any():
            raise UserInputError(f"{where}: {utt}: all posteriors are 0")
    return matrix
