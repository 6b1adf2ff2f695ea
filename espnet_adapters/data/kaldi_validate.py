"""What a valid Kaldi data directory is: every rule, each problem reported as "file:LINE: message".

Per file: layout (``kaldi_maps``), unique keys, ``LC_ALL=C`` order, and the
values each file needs (one speaker per utterance, positive durations,
transcripts without invisible characters, readable wav.scp entries, ...).
Across files: the same utterances everywhere, spk2utt exactly what utt2spk
expands to, segments' recordings in wav.scp.
"""

from __future__ import annotations

import math
import os
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from espnet_adapters.data.kaldi_maps import (
    WHITESPACE, Entry, PathLike, Problems, Table, ark_file, index_keys, parse_entries, read_bytes,
    spk2utt_from_utt2spk,
)

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

# Indic scripts need ZWJ/ZWNJ to choose conjunct and half forms, so they stay.
_ALLOWED_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})
# Awk, sentencepiece and most tokenizers do not split on these: words merge silently.
_NO_BREAK_SPACES = frozenset({"\u00a0", "\u2007", "\u202f"})
_NON_PRINTING_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def validate_data_dir(path: PathLike, *, no_text: bool = False, check_audio: bool = False) -> list[str]:
    """Every problem of the data directory at ``path``, as "file:LINE: message".

    An empty list means valid.  ``no_text`` makes ``text`` optional (it is still
    checked if present); ``check_audio`` also checks that every wav.scp path
    (not pipe) exists, relative to the current directory as Kaldi resolves it.
    """
    return dir_problems(Path(path), str(path), no_text=no_text, check_audio=check_audio)


def dir_problems(directory: Path, display: str, *, no_text: bool, check_audio: bool) -> list[str]:
    """:func:`validate_data_dir` on ``directory``, naming files as if under ``display``."""
    if not directory.is_dir():
        return [f"{display}: not a directory"]
    problems = Problems()
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


def _load_tables(directory: Path, display: str, problems: Problems) -> dict[str, Table]:
    """Parse every known file present, checking layout, unique keys and sort order."""
    tables = {}
    for name in KNOWN_FILES:
        path = directory / name
        if not path.is_file():
            continue
        label = os.path.join(display, name)
        data = read_bytes(path, label)
        entries = parse_entries(label, data, problems)
        if data and not data.endswith(b"\n"):
            problems.add(label, data.count(b"\n") + 1, "last line is not newline-terminated")
        tables[name] = Table(label, entries, index_keys(label, entries, problems, sorted_=True))
    return tables


def _check_nonempty(table: Table, problems: Problems) -> None:
    for number, key, value in table.entries:
        if not value:
            problems.add(table.label, number, "missing value", f"for key {key!r}")


def _check_one_token(table: Table, problems: Problems) -> None:
    for number, key, value in table.entries:
        if not value or WHITESPACE.search(value):
            problems.add(table.label, number, "expected exactly one value field", f"{key!r} {value!r}")


def _check_utt2spk(table: Table, problems: Problems) -> None:
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


def _positive_number(kind: type, table: Table, problems: Problems) -> None:
    for number, key, value in table.entries:
        try:
            parsed = kind(value)
        except ValueError:
            parsed = None
        if parsed is None or not math.isfinite(parsed) or parsed <= 0:
            problems.add(table.label, number, f"expected a positive {kind.__name__}", f"{key!r} {value!r}")


def _check_spk2gender(table: Table, problems: Problems) -> None:
    for number, key, value in table.entries:
        if value not in ("m", "f"):
            problems.add(table.label, number, "gender must be 'm' or 'f'", f"{key!r} {value!r}")


def _check_segments(table: Table, problems: Problems) -> None:
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


def _check_text(table: Table, problems: Problems) -> None:
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
        elif not any(unicodedata.category(char)[0] in "LMN" for char in value):
            problems.add(table.label, number, "transcript has no words (only punctuation or symbols)", repr(key))
        elif bad and not bad.keys().isdisjoint(value):
            column, char = next((i, c) for i, c in enumerate(value, 1) if c in bad)
            problems.add(table.label, number, bad[char], f"in transcript of {key!r}, character {column}")


def _check_wav_scp(table: Table, problems: Problems, *, check_audio: bool) -> None:
    """Each value is a path, an ``ark:offset`` extended filename or a command ending in ``|``."""
    for number, key, value in table.entries:
        reason = _wav_value_problem(value)
        if reason is not None:
            problems.add(table.label, number, reason, f"{key!r} {value!r}")
        elif check_audio and not value.endswith("|"):
            reason = _audio_problem(value)
            if reason is not None:
                problems.add(table.label, number, reason, f"{key!r} {value!r}")


def _wav_value_problem(value: str) -> str | None:
    if not value:
        return "missing value"
    if value.endswith("|"):
        return "empty command" if not value[:-1].strip() else None
    if value.startswith("|"):
        return "output pipe ('| command') cannot be read"
    if value == "-":
        return "standard input ('-') cannot be read per utterance"
    if WHITESPACE.search(value):
        return "path contains whitespace (a command must end with '|')"
    return None


def _audio_problem(value: str) -> str | None:
    """Why the audio of a path or ``ark:offset`` value cannot be read, or None."""
    path = value if os.path.exists(value) else ark_file(value)
    if path is None or not os.path.exists(path):
        return "audio file not found"
    if not os.path.isfile(path):
        return "audio path is not a file"
    if os.path.getsize(path) == 0:
        return "audio file is empty (0 bytes)"
    return None


_VALUE_CHECKS: dict[str, Callable[[Table, Problems], None]] = {
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


def _check_cross_files(tables: dict[str, Table], problems: Problems) -> None:
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


def is_utt_level(name: str, present: Iterable[str]) -> bool:
    """Whether file ``name`` is keyed by utterance, given the files ``present``."""
    return name in UTT_FILES or (name == "wav.scp" and "segments" not in present)


def _utterance_tables(tables: dict[str, Table]) -> list[Table]:
    return [table for name, table in tables.items() if is_utt_level(name, tables)]


def _check_same_utterances(tables: dict[str, Table], problems: Problems) -> None:
    """Every utterance-level file lists the utterances of utt2spk (or the first present)."""
    utt_tables = _utterance_tables(tables)
    if not utt_tables:
        return
    reference = tables.get("utt2spk", utt_tables[0])
    for table in utt_tables:
        if table is not reference:
            _check_same_keys(table, reference, reference.lines.keys(), "utterance", problems)


def _check_same_keys(
    table: Table, reference: Table, expected: Iterable[str], what: str, problems: Problems
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


def _check_recordings(segments: Table, wav_scp: Table, problems: Problems) -> None:
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
    spk2utt: Table, utt2spk: Table, expected: dict[str, list[str]], problems: Problems
) -> None:
    """spk2utt must be exactly what utt2spk expands to (Kaldi compares them byte for byte)."""
    _check_same_keys(spk2utt, utt2spk, expected.keys(), "speaker", problems)
    for number, spk, value in spk2utt.entries:
        if spk in expected and value.split() != expected[spk]:
            problems.add(
                spk2utt.label, number, "utterances differ from utt2spk (regenerate spk2utt)", repr(spk)
            )
