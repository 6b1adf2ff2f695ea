"""Kaldi data directories: read, write, validate, fix and subset them.

A Kaldi data directory is a set of "key rest-of-line" files (``wav.scp``,
``text``, ``utt2spk``, ``spk2utt``, ...).  Kaldi and ESPnet tools merge these
files line by line, as ``sort``/``join`` do, so every file must be sorted in
``LC_ALL=C`` order (byte order of the UTF-8 encoding, which is also Python's
code point order for ``str``), have unique keys and list the same utterances.
A violation does not fail loudly downstream: it silently drops or mismatches
utterances.  That is why everything here is checked up front and reported by
file and line, and why every writer goes through a temporary directory that is
validated before it replaces the destination.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir, atomic_write

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
Entry = tuple[int, str, str]  # (line number, key, value)

# Files keyed by utterance id.  wav.scp joins them unless segments exist; then it
# is keyed by recording id.
UTT_FILES = (
    "text",
    "utt2spk",
    "utt2lang",
    "utt2dur",
    "utt2category",
    "segments",
    "feats.scp",
    "utt2num_frames",
)
KNOWN_FILES = ("wav.scp", *UTT_FILES, "spk2utt", "spk2gender")
BACKUP_DIR = ".backup"

# At most this many problems of one kind are listed per file; the rest are counted.
# A fully unsorted 100k-line file should give a readable report, not 100k lines.
MAX_SHOWN_PER_KIND = 20

_FIELD_SEP = re.compile(r"[ \t]+")
_WHITESPACE = re.compile(r"\s")
_ARK_OFFSET = re.compile(r"(?P<path>.+):\d+(?:\[[0-9:, ]*\])?")


def ark_file(value: str) -> str | None:
    """The ark path of a kaldiio extended filename (``x.ark:123`` or ``x.ark:123[0:9]``), else None."""
    match = _ARK_OFFSET.fullmatch(value.strip())
    return None if match is None else match["path"]
# Indic scripts need ZWJ/ZWNJ to choose conjunct and half forms, so they stay.
_ALLOWED_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})
# Awk, sentencepiece and most tokenizers do not split on these: words merge silently.
_NO_BREAK_SPACES = frozenset({"\u00a0", "\u2007", "\u202f"})
_NON_PRINTING_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

_BLANK = "empty line"


# --------------------------------------------------------------------------- problems


@dataclass
class _Problems:
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
class _Table:
    """One parsed file: its entries in file order and where each key first appears."""

    label: str
    entries: list[Entry]
    lines: dict[str, int]

    def values(self) -> dict[str, str]:
        """Key -> value of each key's first occurrence."""
        return {key: value for line, key, value in self.entries if self.lines[key] == line}


def _parse(label: str, data: bytes, problems: _Problems) -> list[Entry]:
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


def _split_line(label: str, number: int, line: str, problems: _Problems) -> Entry | None:
    """``key rest-of-line`` on the first run of spaces/tabs, trailing blanks dropped."""
    if not line.strip(" \t"):
        problems.add(label, number, _BLANK)
        return None
    if line[0] in " \t":
        problems.add(label, number, "line starts with whitespace")
        line = line.lstrip(" \t")
    sep = _FIELD_SEP.search(line)
    if sep is None:
        return number, line, ""
    return number, line[: sep.start()], line[sep.end() :].rstrip(" \t")


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserInputError(f"{label}: cannot read: {err.strerror}") from err


def _index_keys(label: str, entries: list[Entry], problems: _Problems, *, sorted_: bool) -> dict[str, int]:
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


def _read_checked(path: PathLike, allow_empty_value: bool) -> _Table:
    """Parse ``path``; raise the first problem :func:`read_map` documents."""
    label = str(path)
    problems = _Problems()
    entries = _parse(label, _read_bytes(Path(path), label), problems)
    lines = _index_keys(label, entries, problems, sorted_=False)
    if not allow_empty_value:
        for number, key, value in entries:
            if not value:
                problems.add(label, number, "missing value", f"for key {key!r}")
    message = problems.first()
    if message is not None:
        raise UserInputError(message)
    return _Table(label, entries, lines)


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
    if not key or _WHITESPACE.search(key):
        raise UserInputError(f"{path}: key {key!r} is empty or contains whitespace")
    if "\n" in value or "\r" in value:
        raise UserInputError(f"{path}: value of {key!r} contains a line break")


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Speaker -> its utterances, both in the order of ``utt2spk`` (as Kaldi's perl does)."""
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        spk2utt.setdefault(spk, []).append(utt)
    return spk2utt


def _spk2utt_map(utt2spk: Mapping[str, str]) -> dict[str, str]:
    ordered = dict(sorted(utt2spk.items()))
    return {spk: " ".join(utts) for spk, utts in spk2utt_from_utt2spk(ordered).items()}


def _format_seconds(value: float | str) -> str:
    """Seconds with up to microsecond precision and no exponent (awk-safe)."""
    if isinstance(value, str):
        return value
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def _format_segment(value: str | tuple[str, float, float]) -> str:
    if isinstance(value, str):
        return value
    recording, start, end = value
    return f"{recording} {_format_seconds(start)} {_format_seconds(end)}"


def write_data_dir(
    path: PathLike,
    *,
    wav_scp: Mapping[str, str],
    text: Mapping[str, str],
    utt2spk: Mapping[str, str],
    utt2lang: Mapping[str, str] | None = None,
    utt2dur: Mapping[str, float | str] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    utt2category: Mapping[str, str] | None = None,
    segments: Mapping[str, str | tuple[str, float, float]] | None = None,
) -> None:
    """Write a complete data directory (spk2utt derived from utt2spk), or nothing.

    Files are written sorted into a temporary directory, validated there, and
    only then swapped into place, so readers never see a half-written or
    invalid directory.  Raises :class:`UserInputError` listing the problems if
    the result would not validate; ``path`` is then left as it was.
    ``segments`` values are ``"rec start end"`` or ``(rec, start, end)``.
    """
    files: dict[str, Mapping[str, str]] = {
        "wav.scp": wav_scp,
        "text": text,
        "utt2spk": utt2spk,
        "spk2utt": _spk2utt_map(utt2spk),
    }
    optional: dict[str, Mapping[str, str] | None] = {
        "utt2lang": utt2lang,
        "utt2dur": None if utt2dur is None else {k: _format_seconds(v) for k, v in utt2dur.items()},
        "spk2gender": spk2gender,
        "utt2category": utt2category,
        "segments": None if segments is None else {k: _format_segment(v) for k, v in segments.items()},
    }
    files.update({name: mapping for name, mapping in optional.items() if mapping is not None})
    _install(Path(path), files, no_text=False)


def _install(
    target: Path,
    files: Mapping[str, Mapping[str, str]],
    *,
    no_text: bool,
    prepare: Callable[[Path], None] | None = None,
) -> None:
    """Build ``files`` in a temporary directory, validate it, swap it onto ``target``."""
    with atomic_dir(target) as tmp:
        if prepare is not None:
            prepare(tmp)
        for name, mapping in files.items():
            write_map(tmp / name, mapping)
        problems = _validate(tmp, str(target), no_text=no_text, check_audio=False)
        if problems:
            raise UserInputError(_refusal(target, problems))
    logger.info("wrote %s (%d utterances)", target, len(files["utt2spk"]))


def _refusal(target: Path, problems: list[str], shown: int = 20) -> str:
    listed = "\n  ".join(problems[:shown])
    more = f"\n  ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{target}: not written, the result would be invalid ({len(problems)} problems):\n  {listed}{more}"


# --------------------------------------------------------------------------- validation


def validate_data_dir(path: PathLike, *, no_text: bool = False, check_audio: bool = False) -> list[str]:
    """Every problem of the data directory at ``path``, as "file:LINE: message".

    An empty list means valid.  ``no_text`` makes ``text`` optional (it is still
    checked if present); ``check_audio`` also checks that every wav.scp path
    (not pipe) exists, relative to the current directory as Kaldi resolves it.
    """
    return _validate(Path(path), str(path), no_text=no_text, check_audio=check_audio)


def _validate(directory: Path, display: str, *, no_text: bool, check_audio: bool) -> list[str]:
    """:func:`validate_data_dir` on ``directory``, naming files as if under ``display``."""
    if not directory.is_dir():
        return [f"{display}: not a directory"]
    problems = _Problems()
    tables = _load_tables(directory, display, problems)
    required = ("wav.scp", "utt2spk", "spk2utt") if no_text else ("wav.scp", "utt2spk", "spk2utt", "text")
    for name in required:
        if name not in tables:
            problems.add(os.path.join(display, name), 0, "required file is missing")
    for name, table in tables.items():
        if name == "wav.scp":
            _check_wav_scp(table, problems, check_audio=check_audio)
        else:
            _VALUE_CHECKS[name](table, problems)
    _check_cross_files(tables, problems)
    return problems.report()


def _load_tables(directory: Path, display: str, problems: _Problems) -> dict[str, _Table]:
    """Parse every known file present, checking layout, unique keys and sort order."""
    tables = {}
    for name in KNOWN_FILES:
        path = directory / name
        if not path.is_file():
            continue
        label = os.path.join(display, name)
        data = _read_bytes(path, label)
        entries = _parse(label, data, problems)
        if data and not data.endswith(b"\n"):
            problems.add(label, data.count(b"\n") + 1, "last line is not newline-terminated")
        tables[name] = _Table(label, entries, _index_keys(label, entries, problems, sorted_=True))
    return tables


def _check_nonempty(table: _Table, problems: _Problems) -> None:
    for number, key, value in table.entries:
        if not value:
            problems.add(table.label, number, "missing value", f"for key {key!r}")


def _check_one_token(table: _Table, problems: _Problems) -> None:
    for number, key, value in table.entries:
        if not value or _WHITESPACE.search(value):
            problems.add(table.label, number, "expected exactly one value field", f"{key!r} {value!r}")


def _check_utt2spk(table: _Table, problems: _Problems) -> None:
    """One speaker per utterance, and speakers non-decreasing in utterance order.

    Kaldi requires that sorting utt2spk by utterance and by speaker give the
    same order (spk2utt must expand back to utt2spk); the usual way to get
    that is to make the speaker id a prefix of its utterance ids.
    """
    _check_one_token(table, problems)
    if not table.entries:
        problems.add(table.label, 0, "no utterances")
    previous: Entry | None = None
    for entry in table.entries:
        number, utt, spk = entry
        if previous is not None and spk < previous[2]:
            problems.add(
                table.label,
                number,
                "not sorted by speaker as well as by utterance",
                f"speaker {spk!r} of {utt!r} sorts before {previous[2]!r} of {previous[1]!r}"
                f" (line {previous[0]}); make each speaker id a prefix of its utterance ids",
            )
        previous = entry


def _positive_number(kind: type, table: _Table, problems: _Problems) -> None:
    for number, key, value in table.entries:
        try:
            parsed = kind(value)
        except ValueError:
            parsed = None
        if parsed is None or not math.isfinite(parsed) or parsed <= 0:
            problems.add(table.label, number, f"expected a positive {kind.__name__}", f"{key!r} {value!r}")


def _check_spk2gender(table: _Table, problems: _Problems) -> None:
    for number, key, value in table.entries:
        if value not in ("m", "f"):
            problems.add(table.label, number, "gender must be 'm' or 'f'", f"{key!r} {value!r}")


def _check_segments(table: _Table, problems: _Problems) -> None:
    for number, key, value in table.entries:
        fields = value.split()
        try:
            start, end = float(fields[1]), float(fields[2])
            well_formed = len(fields) == 3 and 0 <= start < end
        except (IndexError, ValueError):
            well_formed = False
        if not well_formed:
            problems.add(
                table.label, number, "expected 'utt recording start end' with 0 <= start < end", repr(value)
            )


def _bad_char(char: str) -> str | None:
    """Why ``char`` must not appear in a transcript, or None if it may."""
    if char in _NO_BREAK_SPACES:
        return f"no-break space U+{ord(char):04X} (use a plain space)"
    if char in _ALLOWED_FORMAT_CHARS or unicodedata.category(char) not in _NON_PRINTING_CATEGORIES:
        return None
    name = unicodedata.name(char, unicodedata.category(char))
    return f"non-printing character U+{ord(char):04X} ({name})"


def _check_text(table: _Table, problems: _Problems) -> None:
    """Empty transcripts and invisible characters that tokenizers mishandle.

    Characters are classified once per distinct character, so the cost does not
    grow with the alphabet's use of combining marks.
    """
    bad = {}
    for char in set("".join(value for _, _, value in table.entries)):
        reason = _bad_char(char)
        if reason is not None:
            bad[char] = reason
    for number, key, value in table.entries:
        if not value:
            problems.add(table.label, number, "empty transcript", repr(key))
        elif bad and not bad.keys().isdisjoint(value):
            column, char = next((i, c) for i, c in enumerate(value, 1) if c in bad)
            problems.add(table.label, number, bad[char], f"in transcript of {key!r}, character {column}")


def _check_wav_scp(table: _Table, problems: _Problems, *, check_audio: bool) -> None:
    """Each value is a path, an ``ark:offset`` extended filename or a command ending in ``|``."""
    for number, key, value in table.entries:
        reason = _wav_value_problem(value)
        if reason is not None:
            problems.add(table.label, number, reason, f"{key!r} {value!r}")
        elif check_audio and not value.endswith("|") and not _audio_exists(value):
            problems.add(table.label, number, "audio file not found", f"{key!r} {value!r}")


def _wav_value_problem(value: str) -> str | None:
    if not value:
        return "missing value"
    if value.endswith("|"):
        return "empty command" if not value[:-1].strip() else None
    if value.startswith("|"):
        return "output pipe ('| command') cannot be read"
    if value == "-":
        return "standard input ('-') cannot be read per utterance"
    if _WHITESPACE.search(value):
        return "path contains whitespace (a command must end with '|')"
    return None


def _audio_exists(value: str) -> bool:
    if os.path.exists(value):
        return True
    path = ark_file(value)
    return path is not None and os.path.exists(path)


_VALUE_CHECKS: dict[str, Callable[[_Table, _Problems], None]] = {
    "text": _check_text,
    "utt2spk": _check_utt2spk,
    "spk2utt": _check_nonempty,
    "utt2lang": _check_one_token,
    "utt2dur": lambda table, problems: _positive_number(float, table, problems),
    "utt2category": _check_one_token,
    "segments": _check_segments,
    "feats.scp": _check_nonempty,
    "utt2num_frames": lambda table, problems: _positive_number(int, table, problems),
    "spk2gender": _check_spk2gender,
}


def _check_cross_files(tables: dict[str, _Table], problems: _Problems) -> None:
    _check_same_utterances(tables, problems)
    if "segments" in tables and "wav.scp" in tables:
        _check_recordings(tables["segments"], tables["wav.scp"], problems)
    if "utt2spk" in tables:
        speakers = spk2utt_from_utt2spk(tables["utt2spk"].values())
        if "spk2utt" in tables:
            _check_spk2utt(tables["spk2utt"], tables["utt2spk"], speakers, problems)
        if "spk2gender" in tables:
            reference = tables.get("spk2utt", tables["utt2spk"])
            _check_same_keys(tables["spk2gender"], reference, speakers.keys(), "speaker", problems)


def _is_utt_level(name: str, present: Iterable[str]) -> bool:
    """Whether file ``name`` is keyed by utterance, given the files ``present``."""
    return name in UTT_FILES or (name == "wav.scp" and "segments" not in present)


def _utterance_tables(tables: dict[str, _Table]) -> list[_Table]:
    return [table for name, table in tables.items() if _is_utt_level(name, tables)]


def _check_same_utterances(tables: dict[str, _Table], problems: _Problems) -> None:
    """Every utterance-level file lists the utterances of utt2spk (or the first present)."""
    utt_tables = _utterance_tables(tables)
    if not utt_tables:
        return
    reference = tables.get("utt2spk", utt_tables[0])
    for table in utt_tables:
        if table is not reference:
            _check_same_keys(table, reference, reference.lines.keys(), "utterance", problems)


def _check_same_keys(
    table: _Table, reference: _Table, expected: Iterable[str], what: str, problems: _Problems
) -> None:
    """Report keys of ``table`` not in ``expected`` and expected keys it lacks."""
    expected = set(expected)
    ref_name = os.path.basename(reference.label)
    for key, number in table.lines.items():
        if key not in expected:
            problems.add(table.label, number, f"{what} not in {ref_name}", repr(key))
    for key in sorted(expected - table.lines.keys()):
        where = f" ({ref_name}:{reference.lines[key]})" if key in reference.lines else ""
        problems.add(table.label, 0, f"lacks {what}s listed in {ref_name}", f"{key!r}{where}")


def _check_recordings(segments: _Table, wav_scp: _Table, problems: _Problems) -> None:
    """With segments, wav.scp lists exactly the recordings the segments use."""
    used: set[str] = set()
    for number, key, value in segments.entries:
        recording = value.split(maxsplit=1)[0] if value else ""
        used.add(recording)
        if recording and recording not in wav_scp.lines:
            problems.add(segments.label, number, "recording not in wav.scp", f"{key!r} -> {recording!r}")
    for key, number in wav_scp.lines.items():
        if key not in used:
            problems.add(wav_scp.label, number, "recording not used by any segment", repr(key))


def _check_spk2utt(
    spk2utt: _Table, utt2spk: _Table, expected: dict[str, list[str]], problems: _Problems
) -> None:
    """spk2utt must be exactly what utt2spk expands to (Kaldi compares them byte for byte)."""
    _check_same_keys(spk2utt, utt2spk, expected.keys(), "speaker", problems)
    for number, spk, value in spk2utt.entries:
        if spk in expected and value.split() != expected[spk]:
            problems.add(
                spk2utt.label, number, "utterances differ from utt2spk (regenerate spk2utt)", repr(spk)
            )


# --------------------------------------------------------------------------- fix and subset


def _restrict(maps: Mapping[str, Mapping[str, str]], utts: set[str]) -> dict[str, dict[str, str]]:
    """The directory restricted to ``utts``.

    Utterance files are filtered; wav.scp keeps the recordings the kept
    segments use (when segments exist); spk2gender keeps the kept speakers;
    spk2utt is regenerated from the kept utt2spk.
    """
    out = {
        name: {key: value for key, value in mapping.items() if key in utts}
        for name, mapping in maps.items()
        if _is_utt_level(name, maps)
    }
    if "segments" in maps and "wav.scp" in maps:
        recordings = {value.split()[0] for value in out["segments"].values()}
        out["wav.scp"] = {key: value for key, value in maps["wav.scp"].items() if key in recordings}
    out["spk2utt"] = _spk2utt_map(out["utt2spk"])
    if "spk2gender" in maps:
        out["spk2gender"] = {key: value for key, value in maps["spk2gender"].items() if key in out["spk2utt"]}
    return out


def _speakers(maps: Mapping[str, Mapping[str, str]]) -> set[str]:
    return set(maps["utt2spk"].values()) | set(maps.get("spk2utt", {})) | set(maps.get("spk2gender", {}))


def fix_data_dir(path: PathLike) -> dict[str, int]:
    """Repair what Kaldi's fix_data_dir.sh repairs; return counts of what was removed.

    Sorts every file, drops exact duplicate lines, empty lines and empty
    transcripts, keeps only utterances present in every utterance-level file
    (and whose recording is in wav.scp), keeps only used recordings and
    speakers, and regenerates spk2utt.  Originals of rewritten files go to
    ``path/.backup/``; other entries of the directory are kept (hard-linked).
    Raises :class:`UserInputError` for what it cannot decide (conflicting
    duplicate keys, CR, invalid UTF-8) or if the result still does not
    validate (e.g. utt2spk not sortable by speaker, NBSP in text); the
    directory is then left untouched.
    """
    directory = Path(path)
    counts = dict.fromkeys(
        ("utterances", "recordings", "speakers", "empty_transcripts", "duplicate_lines", "empty_lines"), 0
    )
    maps = {name: _read_for_fix(directory, name, counts) for name in KNOWN_FILES if (directory / name).is_file()}
    if "utt2spk" not in maps:
        raise UserInputError(f"{directory / 'utt2spk'}: required file is missing")
    if "text" in maps:
        empty = [key for key, value in maps["text"].items() if not value]
        counts["empty_transcripts"] = len(empty)
        maps["text"] = {key: value for key, value in maps["text"].items() if value}
    keep = _utterances_in_all(maps)
    fixed = _restrict(maps, keep)
    counts["utterances"] = len(set().union(*(m for name, m in maps.items() if _is_utt_level(name, maps))) - keep)
    if "segments" in maps and "wav.scp" in maps:
        counts["recordings"] = len(maps["wav.scp"]) - len(fixed["wav.scp"])
    counts["speakers"] = len(_speakers(maps) - _speakers(fixed))

    def prepare(tmp: Path) -> None:
        _carry_over(directory, tmp, rewritten=set(fixed))

    _install(directory, fixed, no_text="text" not in maps, prepare=prepare)
    removed = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing"
    logger.info("fixed %s: removed %s; originals in %s", directory, removed, directory / BACKUP_DIR)
    return counts


def _read_for_fix(directory: Path, name: str, counts: dict[str, int]) -> dict[str, str]:
    """Read leniently: empty lines and exact duplicate lines are dropped and counted."""
    label = str(directory / name)
    problems = _Problems()
    entries = _parse(label, _read_bytes(directory / name, label), problems)
    fatal = problems.first(ignore=_BLANK)
    if fatal is not None:
        raise UserInputError(f"{fatal} (fix_data_dir cannot repair this)")
    counts["empty_lines"] += problems.count(_BLANK)
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, key, value in entries:
        if key not in mapping:
            mapping[key], first_line[key] = value, number
        elif mapping[key] == value:
            counts["duplicate_lines"] += 1
        else:
            raise UserInputError(
                f"{label}:{number}: duplicate key {key!r} with a value different from line"
                f" {first_line[key]} (fix_data_dir cannot choose)"
            )
    if name != "text":
        mapping = {key: value for key, value in mapping.items() if value}
    return mapping


def _utterances_in_all(maps: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Utterances listed in every utterance-level file whose recording exists."""
    keep = set(maps["utt2spk"])
    for name, mapping in maps.items():
        if _is_utt_level(name, maps):
            keep &= mapping.keys()
    if "segments" in maps and "wav.scp" in maps:
        keep = {utt for utt in keep if maps["segments"][utt].split()[0] in maps["wav.scp"]}
    return keep


def _carry_over(source: Path, tmp: Path, *, rewritten: set[str]) -> None:
    """Keep every other entry of ``source`` in ``tmp`` and back up the rewritten files."""
    for entry in source.iterdir():
        if entry.name not in rewritten:
            _link_tree(entry, tmp / entry.name)
    backup = tmp / BACKUP_DIR
    backup.mkdir(exist_ok=True)
    for name in sorted(rewritten):
        if (source / name).is_file():
            (backup / name).unlink(missing_ok=True)
            _link_or_copy(source / name, backup / name)


def _link_tree(source: Path, target: Path) -> None:
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)


def _link_or_copy(source: PathLike, target: PathLike) -> None:
    """Hard-link (cheap for large feature archives), copying where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def subset_data_dir(
    src: PathLike,
    dst: PathLike,
    *,
    utt_list: Iterable[str] | PathLike | None = None,
    spk_list: Iterable[str] | PathLike | None = None,
    first: int | None = None,
    last: int | None = None,
    num_utts: int | None = None,
) -> None:
    """Write the subset of ``src`` selected by exactly one option to ``dst``.

    Semantics of Kaldi's subset_data_dir.sh: ``utt_list``/``spk_list`` are ids
    or a file whose first column holds them (ids not in ``src`` are ignored);
    ``first``/``last`` take the first/last N utterances in sorted order;
    ``num_utts`` takes N utterances spread evenly through the sorted list.
    Every known file is filtered (wav.scp by recording when segments exist)
    and ``dst`` is replaced atomically, after validation.
    """
    source, target = Path(src), Path(dst)
    if source.resolve() == target.resolve():
        raise UserInputError(f"{dst}: destination is the source directory")
    maps = {name: read_map(source / name) for name in KNOWN_FILES if (source / name).is_file()}
    if "utt2spk" not in maps:
        raise UserInputError(f"{source / 'utt2spk'}: required file is missing")
    keep = _select(source, maps["utt2spk"], utt_list=utt_list, spk_list=spk_list,
                   first=first, last=last, num_utts=num_utts)
    if not keep:
        raise UserInputError(f"{src}: the selection matches no utterance")
    _install(target, _restrict(maps, keep), no_text="text" not in maps)


def _select(
    source: Path,
    utt2spk: Mapping[str, str],
    *,
    utt_list: Iterable[str] | PathLike | None,
    spk_list: Iterable[str] | PathLike | None,
    first: int | None,
    last: int | None,
    num_utts: int | None,
) -> set[str]:
    """The utterances chosen by the one given selection option."""
    options = {"utt_list": utt_list, "spk_list": spk_list, "first": first, "last": last, "num_utts": num_utts}
    given = [name for name, value in options.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(options)}; got {given or 'none'}")
    if utt_list is not None:
        wanted = _ids(utt_list)
        _log_unknown(wanted, utt2spk.keys(), "utterances", source)
        return wanted & utt2spk.keys()
    if spk_list is not None:
        wanted = _ids(spk_list)
        _log_unknown(wanted, set(utt2spk.values()), "speakers", source)
        return {utt for utt, spk in utt2spk.items() if spk in wanted}
    return set(_take(sorted(utt2spk), source, first=first, last=last, num_utts=num_utts))


def _take(utts: list[str], source: Path, *, first: int | None, last: int | None, num_utts: int | None) -> list[str]:
    wanted = next(n for n in (first, last, num_utts) if n is not None)
    if not 0 < wanted <= len(utts):
        raise UserInputError(f"{source}: cannot select {wanted} utterances out of {len(utts)}")
    if first is not None:
        return utts[:wanted]
    if last is not None:
        return utts[-wanted:]
    return [utts[i * len(utts) // wanted] for i in range(wanted)]


def _ids(ids: Iterable[str] | PathLike) -> set[str]:
    """Ids given directly, or the first column of a list file (a str is a path)."""
    if not isinstance(ids, (str, os.PathLike)):
        return set(ids)
    label = str(ids)
    problems = _Problems()
    entries = _parse(label, _read_bytes(Path(ids), label), problems)
    fatal = problems.first(ignore=_BLANK)
    if fatal is not None:
        raise UserInputError(fatal)
    return {key for _, key, _ in entries}


def _log_unknown(wanted: set[str], known: Iterable[str], what: str, source: Path) -> None:
    unknown = wanted - set(known)
    if unknown:
        logger.warning("%d of %d listed %s are not in %s, e.g. %r", len(unknown), len(wanted), what,
                       source, min(unknown))
