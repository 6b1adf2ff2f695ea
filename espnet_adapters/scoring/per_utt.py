"""Per-utterance counts of a scored decoding: ``score/per_utt.tsv``.

Written by ``espnet_adapters.bin.score`` beside ``scores.json``, read by
``make_results`` for the paired bootstrap (:mod:`espnet_adapters.scoring.bootstrap`).
A tab-separated file with one header line and one line per utterance, in the
order of the reference text::

    utt_id  ref_words  word_hits  word_sub  word_del  word_ins  word_errors  ref_chars  char_hits  ...

``*_hits`` are the correctly recognised tokens (sclite's ``#C``); ``*_errors`` is
``sub + del + ins``; characters are counted as in ``result.cer.txt`` (code
points, spaces included).  Every line satisfies ``hits + sub + del = ref`` and
``errors = sub + del + ins``; a file that does not names its file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from espnet_adapters.scoring.metrics import ErrorCounts, ScoreReport
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

PER_UTT_FILE = "per_utt.tsv"
_UNIT_FIELDS = ("ref", "hits", "sub", "del", "ins", "errors")
COLUMNS = (
    "utt_id",
    *(f"ref_{unit}s" if name == "ref" else f"{unit}_{name}" for unit in ("word", "char") for name in _UNIT_FIELDS),
)
# The count columns in file order: (unit, field) -> column index in the counts matrix.
_COUNT_COLUMNS = tuple((unit, name) for unit in ("word", "char") for name in _UNIT_FIELDS)


def _fields(counts: ErrorCounts) -> tuple[int, ...]:
    return (counts.ref_len, counts.correct, counts.substitutions, counts.deletions, counts.insertions, counts.errors)


def write_per_utt(path: str | os.PathLike[str], words: ScoreReport, chars: ScoreReport) -> None:
    """Write ``per_utt.tsv`` atomically from the word and character reports of one decoding."""
    if [utt.utt_id for utt in words.utts] != [utt.utt_id for utt in chars.utts]:
        raise ValueError("the word and character reports must hold the same utterances in the same order")
    with atomic_write(path) as out:
        out.write("\t".join(COLUMNS) + "\n")
        for word_utt, char_utt in zip(words.utts, chars.utts, strict=True):
            values = (*_fields(word_utt.counts), *_fields(char_utt.counts))
            out.write(word_utt.utt_id + "\t" + "\t".join(str(value) for value in values) + "\n")


@dataclass(frozen=True)
class PerUttCounts:
    """The content of one ``per_utt.tsv``: utterance ids and an (n, 12) integer matrix."""

    path: Path
    utt_ids: tuple[str, ...]
    counts: np.ndarray

    def column(self, unit: str, name: str) -> np.ndarray:
        """``column("word", "errors")``: one value per utterance, in file order."""
        return self.counts[:, _COUNT_COLUMNS.index((unit, name))]

    def total(self, unit: str) -> dict[str, int]:
        """Sums in the shape of scores.json's ``word_counts``/``char_counts``."""
        sums = {name: int(self.column(unit, name).sum()) for name in ("ref", "hits", "sub", "del", "ins")}
        return {"ref": sums["ref"], "cor": sums["hits"], "sub": sums["sub"], "del": sums["del"], "ins": sums["ins"]}

    def line_of(self, utt_id: str) -> int:
        """The line of ``utt_id`` in the file (the header is line 1)."""
        return self.utt_ids.index(utt_id) + 2


def read_per_utt(path: Path) -> PerUttCounts:
    """Read and check a ``per_utt.tsv``; any bad line is a :class:`UserInputError` naming file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: cannot read ({err})") from err
    if not lines or lines[0].split("\t") != list(COLUMNS):
        raise UserInputError(f"{path}:1: expected the header {' '.join(COLUMNS)}")
    utt_ids: list[str] = []
    seen: dict[str, int] = {}
    rows: list[list[int]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise UserInputError(f"{path}:{lineno}: expected {len(COLUMNS)} tab-separated fields, got {len(fields)}")
        utt_id = fields[0]
        if not utt_id or utt_id != utt_id.strip():
            raise UserInputError(f"{path}:{lineno}: empty or padded utterance id {utt_id!r}")
        if utt_id in seen:
            raise UserInputError(f"{path}:{lineno}: utterance {utt_id} already on line {seen[utt_id]}")
        try:
            values = [int(field) for field in fields[1:]]
        except ValueError as err:
            raise UserInputError(f"{path}:{lineno}: counts must be integers ({err})") from err
        if any(value < 0 for value in values):
            raise UserInputError(f"{path}:{lineno}: negative count")
        for offset, unit in ((0, "word"), (6, "char")):
            ref, hits, sub, dele, ins, errors = values[offset : offset + 6]
            if hits + sub + dele != ref or errors != sub + dele + ins:
                raise UserInputError(
                    f"{path}:{lineno}: inconsistent {unit} counts (need hits + sub + del = ref "
                    f"and errors = sub + del + ins)"
                )
        seen[utt_id] = lineno
        utt_ids.append(utt_id)
        rows.append(values)
    if not rows:
        raise UserInputError(f"{path}: no utterances")
    return PerUttCounts(path, tuple(utt_ids), np.asarray(rows, dtype=np.int64))


def paired_counts(base: PerUttCounts, system: PerUttCounts) -> tuple[PerUttCounts, PerUttCounts]:
    """``system``'s rows reordered to ``base``'s utterance order, after checking that both
    were scored on the same utterances with the same references (else a paired
    comparison is meaningless: the error names the file and line)."""
    base_ids = set(base.utt_ids)
    for utt_id in system.utt_ids:
        if utt_id not in base_ids:
            raise UserInputError(
                f"{system.path}:{system.line_of(utt_id)}: utterance {utt_id} is not in {base.path}: "
                "the two decodings were not scored on the same test set"
            )
    system_ids = set(system.utt_ids)
    for utt_id in base.utt_ids:
        if utt_id not in system_ids:
            raise UserInputError(
                f"{base.path}:{base.line_of(utt_id)}: utterance {utt_id} is not in {system.path}: "
                "the two decodings were not scored on the same test set"
            )
    position = {utt_id: index for index, utt_id in enumerate(system.utt_ids)}
    order = np.asarray([position[utt_id] for utt_id in base.utt_ids], dtype=np.int64)
    aligned = PerUttCounts(system.path, base.utt_ids, system.counts[order])
    for unit in ("word", "char"):
        differs = np.nonzero(base.column(unit, "ref") != aligned.column(unit, "ref"))[0]
        if differs.size:
            utt_id = base.utt_ids[int(differs[0])]
            raise UserInputError(
                f"{system.path}:{system.line_of(utt_id)}: utterance {utt_id} has "
                f"{int(aligned.column(unit, 'ref')[differs[0]])} reference {unit}s, "
                f"{base.path}:{base.line_of(utt_id)} has {int(base.column(unit, 'ref')[differs[0]])}: "
                "scored against different references or normalisers"
            )
    return base, aligned
