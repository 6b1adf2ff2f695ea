"""What every corpus preparer shares: the utterance record, ids, skips, durations, output.

A preparer reads one corpus split in its native layout and returns
:class:`Utterance` records; :func:`write_split` turns them into a validated Kaldi
data directory plus ``stats.json``.  Keeping the corpus-specific code down to
"parse the native files" is what makes five corpora (and the next one) behave the
same downstream.

Ids.  Kaldi wants every file sorted by utterance id *and* ``utt2spk`` sorted by
speaker, which holds when the speaker id is a prefix of the utterance id followed
by a separator that sorts before every id character.  :func:`kaldi_id` keeps ids to
``[A-Za-z0-9_]`` and :func:`utt_id` joins parts with ``-`` (0x2D, below digits and
letters), so ``spk1-x`` sorts before ``spk10-x`` in both orders.  Speaker ids carry
the corpus tag (``cv-…``, ``kb-…``) so ids from different corpora never collide in
a mixed training set.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from espnet_adapters.data.kaldi import write_data_dir
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

_NOT_ID = re.compile(r"[^A-Za-z0-9_]+")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a prepared split.

    ``audio`` is the ``wav.scp`` value of the recording: a file path, or a command
    ending in ``|``.  When ``segment`` is set, ``audio`` is the whole recording
    ``recording`` and the utterance is ``segment = (start, end)`` seconds of it.
    """

    utt_id: str
    speaker: str
    audio: str
    text: str
    lang: str
    duration: float
    gender: str | None = None
    recording: str | None = None
    segment: tuple[float, float] | None = None


def kaldi_id(value: str) -> str:
    """A native id made safe for Kaldi files (no whitespace, no separator clashes)."""
    cleaned = _NOT_ID.sub("_", value.strip()).strip("_")
    if not cleaned:
        raise ValueError(f"id {value!r} has no usable characters")
    return cleaned


def speaker_id(corpus_tag: str, native: str) -> str:
    """Corpus-tagged speaker id, e.g. ``cv-3f2a…`` for a Common Voice ``client_id``."""
    return f"{corpus_tag}-{kaldi_id(native)}"


def utt_id(speaker: str, *parts: str) -> str:
    """Utterance id = speaker id + ``-`` + the native utterance id parts."""
    return "-".join([speaker, *(kaldi_id(p) for p in parts)])


class SkipLog:
    """Counts and reports utterances a preparer could not use.

    Real corpora always hold a few broken rows (missing clip, empty sentence,
    undecodable file).  Dropping them silently hides data problems; failing the
    whole preparation for one bad row of 100k is worse.  So each skip is logged as
    a warning naming the file and row, counted by reason, and summarised; a split
    where nothing usable remains is an error (:meth:`check`).
    """

    def __init__(self, max_logged: int = 20) -> None:
        self.reasons: Counter[str] = Counter()
        self.max_logged = max_logged

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        """Record one skipped utterance; ``where`` is ``file:row``, ``reason`` a short category."""
        self.reasons[reason] += 1
        if self.reasons[reason] <= self.max_logged:
            logger.warning("skipped %s: %s%s", where, reason, f" ({detail})" if detail else "")
        elif self.reasons[reason] == self.max_logged + 1:
            logger.warning("further '%s' skips are counted, not listed", reason)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.reasons:
            return "no utterance skipped"
        return "skipped " + ", ".join(f"{n} ({r})" for r, n in sorted(self.reasons.items()))

    def check(self, kept: int, what: str) -> None:
        """Raise when nothing usable remains of ``what`` (a split, a file)."""
        if kept == 0:
            raise UserInputError(f"{what}: no usable utterance ({self.summary()})")


def clean_transcript(text: str) -> str:
    """Unicode NFC, invisible format characters removed, whitespace (NBSP, tabs, CR) collapsed.

    Only layout is changed here: casing, punctuation and digits stay as the corpus
    wrote them (Whisper is trained on cased, punctuated text); the scoring
    normaliser (:mod:`espnet_adapters.scoring.normalize`) compares references and
    hypotheses after the same NFC/casefold/punctuation rules.  ZWJ/ZWNJ are kept:
    they are legitimate in Indic spelling (the scorer ignores them on both sides).
    """
    text = unicodedata.normalize("NFC", text)
    chars = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zs", "Zl", "Zp", "Cc"):
            chars.append(" ")
        elif category == "Cf" and char not in "\u200c\u200d":
            continue  # BOM, bidi marks, soft hyphen: invisible and meaningless here
        else:
            chars.append(char)
    return " ".join("".join(chars).split())


def audio_duration(path: str | Path, where: str) -> float:
    """Duration in seconds of an audio file, via libsndfile or (m4a & co.) ffprobe.

    Raises :class:`UserInputError` naming ``where`` when the file cannot be read,
    so a preparer can count it as a skip.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{where}: audio file not found: {path}")
    try:
        info = sf.info(str(path))
        if info.samplerate > 0 and info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError):
        pass
    if shutil.which("ffprobe") is None:
        raise UserInputError(f"{where}: cannot read {path} (libsndfile cannot, and ffprobe is not installed)")
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=False,
    )
    try:
        duration = float(result.stdout.strip())
    except ValueError:
        duration = 0.0
    if result.returncode != 0 or duration <= 0:
        message = (result.stderr.strip().splitlines() or ["no duration"])[-1]
        raise UserInputError(f"{where}: cannot read {path} ({message})")
    return duration


def filter_duration(utts: Iterable[Utterance], min_dur: float, max_dur: float, skips: SkipLog) -> list[Utterance]:
    """Drop utterances outside [min_dur, max_dur] seconds, counting them as skips."""
    kept = []
    for utt in utts:
        if utt.duration < min_dur:
            skips.skip(utt.utt_id, f"shorter than {min_dur} s", f"{utt.duration:.2f} s")
        elif utt.duration > max_dur:
            skips.skip(utt.utt_id, f"longer than {max_dur} s", f"{utt.duration:.2f} s")
        else:
            kept.append(utt)
    return kept


def split_stats(utts: Iterable[Utterance]) -> dict[str, float | int]:
    """Utterances, speakers and hours of a split (what a corpus paper's table lists)."""
    utts = list(utts)
    return {
        "utterances": len(utts),
        "speakers": len({u.speaker for u in utts}),
        "hours": round(sum(u.duration for u in utts) / 3600.0, 4),
    }


def write_split(
    out_dir: str | Path,
    utts: Iterable[Utterance],
    *,
    category: str | Mapping[str, str] | None = None,
    extra_stats: Mapping[str, object] | None = None,
) -> dict:
    """Write ``utts`` as a validated Kaldi data dir (or nothing) plus ``stats.json``.

    ``category`` fills ``utt2category``: the corpus name, or (for a mixed set)
    utterance id -> source name, so a pooled test set can still be scored per
    source.  ``extra_stats`` are added to ``stats.json``.  Returns the stats.
    """
    out_dir = Path(out_dir)
    utts = sorted(utts, key=lambda u: u.utt_id)
    if not utts:
        raise UserInputError(f"{out_dir}: no utterances to write")
    seen: Counter[str] = Counter(u.utt_id for u in utts)
    dups = [k for k, n in seen.items() if n > 1]
    if dups:
        raise UserInputError(f"{out_dir}: duplicate utterance ids, e.g. {', '.join(dups[:5])}")
    segmented = any(u.segment is not None for u in utts)
    if segmented and not all(u.segment is not None and u.recording for u in utts):
        raise UserInputError(f"{out_dir}: either every utterance has a segment or none")
    if segmented:
        wav_scp = {u.recording: u.audio for u in utts}  # type: ignore[misc]
        segments = {u.utt_id: (u.recording, u.segment[0], u.segment[1]) for u in utts}  # type: ignore[index]
    else:
        wav_scp = {u.utt_id: u.audio for u in utts}
        segments = None
    genders = {u.speaker: u.gender for u in utts if u.gender in ("m", "f")}
    write_data_dir(
        out_dir,
        wav_scp=wav_scp,
        text={u.utt_id: u.text for u in utts},
        utt2spk={u.utt_id: u.speaker for u in utts},
        utt2lang={u.utt_id: u.lang for u in utts},
        utt2dur={u.utt_id: u.duration for u in utts},
        spk2gender=genders or None,
        utt2category=_categories(category, utts),
        segments=segments,
    )
    stats = {**split_stats(utts), **(extra_stats or {})}
    with atomic_write(out_dir / "stats.json") as out:
        json.dump(stats, out, indent=2)
        out.write("\n")
    logger.info("%s: %d utterances, %d speakers, %.3f h", out_dir, stats["utterances"], stats["speakers"], stats["hours"])
    return stats


def _categories(category: str | Mapping[str, str] | None, utts: list[Utterance]) -> dict[str, str] | None:
    """``utt2category`` of :func:`write_split`: one name for all, or a name per utterance."""
    if category is None:
        return None
    if isinstance(category, str):
        return {u.utt_id: category for u in utts}
    return {u.utt_id: category[u.utt_id] for u in utts}


def check_no_speaker_leak(splits: dict[str, Iterable[Utterance]]) -> None:
    """Fail when a speaker appears in two splits (the speaker-independence rule)."""
    owner: dict[str, str] = {}
    leaks: list[str] = []
    for name, utts in splits.items():
        for spk in sorted({u.speaker for u in utts}):
            if spk in owner and owner[spk] != name:
                leaks.append(f"{spk} ({owner[spk]} and {name})")
            owner.setdefault(spk, name)
    if leaks:
        raise UserInputError(
            f"speaker leakage across splits: {len(leaks)} speakers, e.g. {', '.join(leaks[:5])}"
            " (re-split speaker-independently)"
        )


def read_tab_transcripts(path: Path, skips: SkipLog) -> Iterator[tuple[str, str, str]]:
    """``(file:line, key, text)`` of each ``key<TAB>text`` line of a transcript file.

    Several corpora (MLS ``transcripts.txt``, Kathbath ``transcription_n2w.txt``)
    ship this format.  The text is :func:`clean_transcript`-ed; a line without a
    tab, with an empty key or text, with invalid UTF-8 or repeating an earlier key
    is counted as a skip.  Blank lines are ignored; a missing file is an error.
    """
    if not path.is_file():
        raise UserInputError(f"{path}: transcript file not found")
    first: dict[str, int] = {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8").removeprefix("\ufeff" if number == 1 else "")
        except UnicodeDecodeError as err:
            skips.skip(where, "invalid UTF-8", err.reason)
            continue
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        key, text = key.strip(), clean_transcript(text)
        if not tab or not key:
            skips.skip(where, "not 'id<TAB>text'", line[:80])
        elif not text:
            skips.skip(where, "empty transcript", key)
        elif key in first:
            skips.skip(where, "duplicate id", f"{key} first on line {first[key]}")
        else:
            first[key] = number
            yield where, key, text


def probe_audio(path: Path, where: str, skips: SkipLog) -> float | None:
    """Duration of ``path`` in seconds, or None after counting a missing/unreadable-audio skip."""
    if not path.is_file():
        skips.skip(where, "missing audio", str(path))
        return None
    try:
        return audio_duration(path, where)
    except UserInputError as err:
        skips.skip(where, "unreadable audio", str(err).removeprefix(f"{where}: "))
        return None


def read_tsv(
    path: Path,
    skips: SkipLog,
    *,
    columns: Sequence[str] | None = None,
    required: Sequence[str] = (),
    unique: str | None = None,
) -> Iterator[tuple[str, dict[str, str]]]:
    """``(file:line, {column: value})`` of each row of a tab-separated corpus table.

    ``columns`` names the fields of a table without a header (FLEURS); without it
    the first line is the header (Common Voice), so fields are found by name and
    every release's column set works.  A header lacking a ``required`` column is an
    error naming the file.  Quotes are ordinary characters (``csv.QUOTE_NONE``):
    Common Voice sentences contain unbalanced ``"``.  A row with another number of
    fields, or repeating the value of column ``unique`` (the clip: one clip is one
    utterance), is counted as a skip; blank lines are ignored; a missing file, or
    one that is not UTF-8, is an error.
    """
    if not path.is_file():
        raise UserInputError(f"{path}: file not found")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            names = list(columns) if columns is not None else _tsv_header(path, next(reader, None), required)
            yield from _tsv_rows(path, ((reader.line_num, fields) for fields in reader), names, skips, unique)
        except UnicodeDecodeError as err:
            raise UserInputError(f"{path}: not valid UTF-8 ({err.reason})") from err
        except csv.Error as err:
            raise UserInputError(f"{path}:{reader.line_num}: {err}") from err


def _tsv_rows(
    path: Path, lines: Iterable[tuple[int, list[str]]], names: list[str], skips: SkipLog, unique: str | None
) -> Iterator[tuple[str, dict[str, str]]]:
    first: dict[str, int] = {}
    for number, fields in lines:
        where = f"{path}:{number}"
        if not any(field.strip() for field in fields):
            continue
        if len(fields) != len(names):
            skips.skip(where, "wrong number of fields", f"{len(fields)} instead of {len(names)}")
            continue
        row = dict(zip(names, fields))
        if unique is not None and row[unique] in first:
            skips.skip(where, f"duplicate {unique}", f"{row[unique]} first on line {first[row[unique]]}")
            continue
        if unique is not None:
            first[row[unique]] = number
        yield where, row


def _tsv_header(path: Path, header: list[str] | None, required: Sequence[str]) -> list[str]:
    if not header:
        raise UserInputError(f"{path}: empty, expected a header line")
    missing = [name for name in required if name not in header]
    if missing:
        raise UserInputError(
            f"{path}:1: header lacks column {', '.join(missing)} (it has: {', '.join(header)})"
        )
    return header
