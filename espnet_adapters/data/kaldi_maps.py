"""The Kaldi "key rest-of-line" file: parse it, report its problems by file and line, read and write it.

Every file of a data directory (``wav.scp``, ``text``, ``utt2spk``, ...) has
this layout; :mod:`espnet_adapters.data.kaldi` says why it must be exact.
:class:`Problems` and :func:`parse_entries` are shared with the validation
(``kaldi_validate``) and the directory writers (``kaldi_dirs``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

PathLike = str | os.PathLike[str]
Entry = tuple[int, str, str]  # (line number, key, value)

# At most this many problems of one kind are listed per file; the rest are counted.
# A fully unsorted 100k-line file should give a readable report, not 100k lines.
MAX_SHOWN_PER_KIND = 20

_FIELD_SEP = re.compile(r"[ \t]+")
WHITESPACE = re.compile(r"\s")
_ARK_OFFSET = re.compile(r"(?P<path>.+):\d+(?:\[[0-9:, ]*\])?")


def ark_file(value: str) -> str | None:
    """The ark path of a kaldiio extended filename (``x.ark:123`` or ``x.ark:123[0:9]``), else None."""
    match = _ARK_OFFSET.fullmatch(value.strip())
    return None if match is None else match["path"]


BLANK = "empty line"  # the kind of problem fix_data_dir repairs (drops) instead of refusing


# --------------------------------------------------------------------------- problems


@dataclass
class Problems:
    """Collects "file:LINE: kind: detail" messages, capping each kind per file."""

    shown: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (label, kind)

    def add(self, label: str, line: int, kind: str, detail: str = "") -> None:
        """Record a problem; ``line`` 0 means the whole file."""
        self.counts[label, kind] += 1
        if self.counts[label, kind] > MAX_SHOWN_PER_KIND:
            return
        where = f"{label}:{line}" if line else label
        self.shown.append((kind, f"{where}: {kind}: {detail}" if detail else f"{where}: {kind}"))

    def count(self, kind: str | None = None) -> int:
        """How many problems (of ``kind``) were recorded, shown or not."""
        return sum(n for (_, k), n in self.counts.items() if kind is None or k == kind)

    def first(self, *, ignore: str | None = None) -> str | None:
        """The first message whose kind is not ``ignore``."""
        return next((msg for kind, msg in self.shown if kind != ignore), None)

    def report(self) -> list[str]:
        """Every shown message, then one summary line per capped kind."""
        hidden = [
            f"{label}: {n - MAX_SHOWN_PER_KIND} more not shown: {kind}"
            for (label, kind), n in self.counts.items()
            if n > MAX_SHOWN_PER_KIND
        ]
        return [msg for _, msg in self.shown] + hidden


# --------------------------------------------------------------------------- parsing


@dataclass
class Table:
    """One parsed file: its entries in file order and where each key first appears."""

    label: str
    entries: list[Entry]
    lines: dict[str, int]

    def values(self) -> dict[str, str]:
        """Key -> value of each key's first occurrence."""
        return {key: value for line, key, value in self.entries if self.lines[key] == line}


def parse_entries(label: str, data: bytes, problems: Problems) -> list[Entry]:
    """Split ``data`` into (line, key, value); report encoding and layout problems.

    Lines are split on ``\\n`` only: ``str.splitlines`` would also break on
    U+2028, form feeds etc., which Kaldi's tools do not.
    """
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        problems.add(label, line, "invalid UTF-8", err.reason)
        return []
    if content.startswith("\ufeff"):
        problems.add(label, 1, "starts with a byte-order mark (U+FEFF)")
        content = content[1:]
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()
    has_cr = "\r" in content
    entries: list[Entry] = []
    for number, line in enumerate(lines, 1):
        if has_cr and "\r" in line:
            problems.add(label, number, "carriage return (CR); convert with dos2unix")
            line = line.replace("\r", "")
        key, _, value = line.partition(" ")
        if key and "\t" not in key and value == value.strip(" \t"):  # fast path: "key value"
            entries.append((number, key, value))
            continue
        entry = _split_line(label, number, line, problems)
        if entry is not None:
            entries.append(entry)
    return entries


def _split_line(label: str, number: int, line: str, problems: Problems) -> Entry | None:
    """``key rest-of-line`` on the first run of spaces/tabs, trailing blanks dropped."""
    if not line.strip(" \t"):
        problems.add(label, number, BLANK)
        return None
    if line[0] in " \t":
        problems.add(label, number, "line starts with whitespace")
        line = line.lstrip(" \t")
    sep = _FIELD_SEP.search(line)
    if sep is None:
        return number, line, ""
    return number, line[: sep.start()], line[sep.end() :].rstrip(" \t")


def read_bytes(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserInputError(f"{label}: cannot read: {err.strerror}") from err


def index_keys(label: str, entries: list[Entry], problems: Problems, *, sorted_: bool) -> dict[str, int]:
    """Key -> first line; reports duplicates and (if ``sorted_``) C-order violations."""
    lines: dict[str, int] = {}
    previous: str | None = None
    for number, key, _ in entries:
        if key in lines:
            problems.add(label, number, "duplicate key", f"{key!r} (first on line {lines[key]})")
            continue
        if not key.isprintable():  # e.g. NBSP: awk keeps it in the key, str.split() does not
            problems.add(label, number, "key contains a non-printing or non-ASCII space character", repr(key))
        if sorted_ and previous is not None and key < previous:
            problems.add(
                label, number, "not sorted in LC_ALL=C order", f"{key!r} comes after {previous!r}"
            )
        lines[key] = number
        previous = key
    return lines


# --------------------------------------------------------------------------- read/write


def read_map(path: PathLike, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi "key rest-of-line" file, keeping file order.

    Raises :class:`UserInputError` ("path:LINE: message") on invalid UTF-8, a
    CR, an empty line, a duplicate key or (unless ``allow_empty_value``) a key
    without a value, because each of these makes later joins ambiguous.
    Sorting is not required here; :func:`validate_data_dir` checks it.
    """
    return {key: value for _, key, value in _read_checked(path, allow_empty_value).entries}


def read_map_lines(path: PathLike, *, allow_empty_value: bool = False) -> dict[str, tuple[int, str]]:
    """Like :func:`read_map`, but key -> (line number, value), for messages that cite the line."""
    return {key: (number, value) for number, key, value in _read_checked(path, allow_empty_value).entries}


def _read_checked(path: PathLike, allow_empty_value: bool) -> Table:
    """Parse ``path``; raise the first problem :func:`read_map` documents."""
    label = str(path)
    problems = Problems()
    entries = parse_entries(label, read_bytes(Path(path), label), problems)
    lines = index_keys(label, entries, problems, sorted_=False)
    if not allow_empty_value:
        for number, key, value in entries:
            if not value:
                problems.add(label, number, "missing value", f"for key {key!r}")
    message = problems.first()
    if message is not None:
        raise UserInputError(message)
    return Table(label, entries, lines)


read_utt2spk = read_map


def write_map(path: PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``key value`` lines sorted in C order, newline-terminated, atomically."""
    lines = []
    for key in sorted(mapping):
        value = mapping[key]
        _check_writable(path, key, value)
        lines.append(f"{key} {value}\n" if value else f"{key}\n")
    with atomic_write(path) as handle:
        handle.writelines(lines)


def _check_writable(path: PathLike, key: str, value: str) -> None:
    """Refuse what could not be read back as the same key and value."""
    if not key or WHITESPACE.search(key):
        raise UserInputError(f"{path}: key {key!r} is empty or contains whitespace")
    if "\n" in value or "\r" in value:
        raise UserInputError(f"{path}: value of {key!r} contains a line break")


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Speaker -> its utterances, both in the order of ``utt2spk`` (as Kaldi's perl does)."""
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        spk2utt.setdefault(spk, []).append(utt)
    return spk2utt
