"""IndicVoices (AI4Bharat, CC-BY-4.0): spontaneous, extempore and read speech, 22 languages.

Layout under the root (``INDICVOICES`` in db.sh), as released::

    <Language>/<version>/<train|valid>/<uuid>_<n>.wav     one long recording
    <Language>/<version>/<train|valid>/<uuid>_<n>.json    its metadata and transcripts

Each json holds the speaker's metadata (``speaker_id``, ``gender`` "Male"/"Female"/
"Other", ``age_group``, ``district``, ...) and two parallel lists of segments,
``verbatim`` and ``normalized``, each ``{start, end, text, speaker_id}``.  This is
the format AI4Bharat's own chunker (``TGZ/create_indicvoices.py`` in
github.com/AI4Bharat/IndicVoices) reads, and this preparer follows it:

* The segment's ``speaker_id`` is *not* the speaker: it is the index of the voice
  within the recording.  Voice 0 is the participant the metadata describes; other
  voices (the interviewer of a conversation) are skipped, counted, as the
  reference chunker skips voice 1.  Our speaker is the json's top-level
  ``speaker_id``.
* Boundaries come from the ``verbatim`` list (start clipped at 0, end at the
  recording's length); segments outside 0.05-30 s are skipped, counted, as the
  reference chunker drops them.
* Event and noise tags (``[noise]``, ``(laugh)``, ``<breath>``) and stray brackets
  are removed from both texts, as the reference chunker does; a segment whose
  verbatim *or* normalised text is then empty is skipped, so both text variants
  give the same utterances and results are comparable.  The transcript is the
  ``normalized`` text by default (numbers as digits), ``--iv_text verbatim``
  for the verbatim one; punctuation and case are kept (see ``clean_transcript``).
* A json that cannot be parsed or lacks these fields is skipped, counted, naming
  the file; so is a recording whose wav is missing or unreadable.

Each segment becomes an utterance of the recording (``segments`` + a wav.scp
keyed by recording): the long wav is never cut on disk.

Version: the newest ``<version>`` folder (natural sort, so v10 > v9) is used and
logged; keep only the wanted version under the root to prepare another.

Splits.  IndicVoices ships train and valid only.  ``train`` is train; valid is
split speaker-independently into ``dev`` and ``test``, half of its audio each,
with a fixed seed so everyone's dev and test are the same (a held-out set that
shares no speaker with train is what a test set must be; valid is the only such
set IndicVoices has).  If a release has a ``test`` folder, it is ``test`` and
valid is ``dev``.  Train utterances of a speaker who is also in valid or test
are skipped (counted), so the splits never share a speaker.  Skips in valid are
reported with both dev and test, which are both read from it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

from espnet_adapters.data.corpora import PrepOptions, corpus_locale
from espnet_adapters.data.corpora.common import (
    SkipLog,
    Utterance,
    clean_transcript,
    probe_audio,
    speaker_id,
    utt_id,
)
from espnet_adapters.data.corpora.splits import resplit_by_speaker
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

NAME = "indicvoices"
TAG = "iv"
DB_VAR = "INDICVOICES"
# Our code -> the release's language folder (the 22 languages of the 8th schedule).
LANGS = {
    "as": "Assamese",
    "bn": "Bengali",
    "brx": "Bodo",
    "doi": "Dogri",
    "gu": "Gujarati",
    "hi": "Hindi",
    "kn": "Kannada",
    "kok": "Konkani",
    "ks": "Kashmiri",
    "mai": "Maithili",
    "ml": "Malayalam",
    "mni": "Manipuri",
    "mr": "Marathi",
    "ne": "Nepali",
    "or": "Odia",
    "pa": "Punjabi",
    "sa": "Sanskrit",
    "sat": "Santali",
    "sd": "Sindhi",
    "ta": "Tamil",
    "te": "Telugu",
    "ur": "Urdu",
}

# The reference chunker's segment length limits (seconds).
MIN_SEGMENT = 0.05
MAX_SEGMENT = 30.0
# Seed of the valid -> dev/test split: fixed, so dev and test are the same for everyone.
VALID_SPLIT_SEED = 0
GENDERS = {"male": "m", "female": "f"}
SEGMENT_LISTS = ("verbatim", "normalized")

# Event/noise tags in brackets, parentheses or angle brackets, then any stray bracket.
_TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|[\[\]()<>]")
_DIGITS = re.compile(r"(\d+)")


def splits(options: PrepOptions) -> tuple[str, ...]:
    return ("train", "dev", "test")


def remove_tags(text: str) -> str:
    """``"[noise] नमस्ते (laugh) जी"`` -> ``"नमस्ते जी"`` (whitespace collapsed)."""
    return clean_transcript(_TAGS.sub(" ", text))


def prepare(root: Path, lang: str, split: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The utterances of ``split`` (``train``/``dev``/``test``) of language ``lang``."""
    version = version_dir(Path(root), lang)
    has_test = (version / "test").is_dir()
    if split == "train":
        utts = read_split_dir(version / "train", lang, skips, options)
        held_out = [version / "valid", version / "test"] if has_test else [version / "valid"]
        return _drop_speakers(utts, _speakers_in(held_out), skips)
    if has_test:
        return read_split_dir(version / ("valid" if split == "dev" else "test"), lang, skips, options)
    valid = read_split_dir(version / "valid", lang, skips, options)
    return resplit_by_speaker(valid, {"dev": 0.5, "test": 0.5}, seed=VALID_SPLIT_SEED)[split]


def version_dir(root: Path, lang: str) -> Path:
    """``<root>/<Language>/<newest version>``, or a clear error."""
    lang_dir = root / corpus_locale(sys.modules[__name__], lang)
    versions = sorted((d for d in lang_dir.iterdir() if d.is_dir()), key=_natural) if lang_dir.is_dir() else []
    if not versions:
        raise UserInputError(f"{lang_dir}: no <version>/ folder (expected <Language>/<version>/<train|valid>/)")
    if len(versions) > 1:
        logger.info("%s: using the newest version %s (ignoring %s)", lang_dir, versions[-1].name,
                    ", ".join(v.name for v in versions[:-1]))
    return versions[-1]


def _natural(path: Path) -> list[Any]:
    """Sort key comparing digit runs as numbers: v2 < v10."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(path.name)]


def read_split_dir(split_dir: Path, lang: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """Every usable segment of every recording in ``split_dir``."""
    if not split_dir.is_dir():
        raise UserInputError(f"{split_dir}: split folder not found")
    return [utt for path in sorted(split_dir.glob("*.json")) for utt in _read_recording(path, lang, skips, options)]


def load_metadata(path: Path) -> tuple[dict | None, str]:
    """The json of one recording and ``""``, or ``None`` and what is wrong with it."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"cannot parse: {err}"
    if not isinstance(meta, dict):
        return None, "not a json object"
    try:
        speaker_id(TAG, str(meta.get("speaker_id", "")))
    except ValueError:
        return None, f"no usable speaker_id ({meta.get('speaker_id')!r})"
    lists = [meta.get(name) for name in SEGMENT_LISTS]
    if not all(isinstance(segments, list) for segments in lists):
        return None, "no verbatim/normalized segment lists"
    if len(lists[0]) != len(lists[1]):
        return None, f"{len(lists[0])} verbatim but {len(lists[1])} normalized segments"
    return meta, ""


def _read_recording(path: Path, lang: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The usable segments of one ``<uuid>_<n>.json`` + ``.wav`` recording."""
    meta, problem = load_metadata(path)
    if meta is None:
        skips.skip(str(path), "unusable json", problem)
        return []
    wav = path.with_suffix(".wav")
    length = probe_audio(wav, str(path), skips)
    if length is None:
        return []
    speaker = speaker_id(TAG, str(meta["speaker_id"]))
    recording = utt_id(speaker, path.stem)
    gender = GENDERS.get(str(meta.get("gender", "")).strip().lower())
    utts = []
    for index, (verbatim, normalized) in enumerate(zip(meta["verbatim"], meta["normalized"]), 1):
        where = f"{path}: segment {index}"
        segment = _segment(verbatim, normalized, length, options.iv_text, where, skips)
        if segment is None:
            continue
        (start, end), text = segment
        utts.append(Utterance(
            utt_id=utt_id(recording, f"{index:04d}"), speaker=speaker, audio=str(wav.absolute()), text=text,
            lang=lang, duration=end - start, gender=gender, recording=recording, segment=(start, end),
        ))
    return utts


def _segment(
    verbatim: Any, normalized: Any, length: float, iv_text: str, where: str, skips: SkipLog
) -> tuple[tuple[float, float], str] | None:
    """``((start, end), text)`` of a usable segment, else None after counting the skip."""
    try:
        start, end = max(float(verbatim["start"]), 0.0), min(float(verbatim["end"]), length)
        if not math.isfinite(end - start):
            raise ValueError(f"start {verbatim['start']!r}, end {verbatim['end']!r}")
        texts = {"verbatim": remove_tags(verbatim["text"]), "normalized": remove_tags(normalized["text"])}
    except (TypeError, KeyError, ValueError) as err:
        skips.skip(where, "malformed segment", f"{type(err).__name__}: {err}")
        return None
    voice = verbatim.get("speaker_id", 0)
    if str(voice) != "0":
        skips.skip(where, "another voice than the participant", f"speaker_id {voice}")
    elif end - start > MAX_SEGMENT:
        skips.skip(where, f"segment longer than {MAX_SEGMENT:g} s", f"{end - start:.2f} s")
    elif end - start < MIN_SEGMENT:
        skips.skip(where, f"segment shorter than {MIN_SEGMENT:g} s", f"{start:.3f}-{end:.3f} s")
    elif not all(texts.values()):
        skips.skip(where, "empty transcript", ", ".join(name for name, text in texts.items() if not text))
    else:
        return (start, end), texts[iv_text]
    return None


def _speakers_in(split_dirs: list[Path]) -> set[str]:
    """Speaker ids of the recordings in ``split_dirs`` (unusable jsons are reported where they are read)."""
    speakers = set()
    for split_dir in split_dirs:
        for path in sorted(split_dir.glob("*.json")):
            meta, _ = load_metadata(path)
            if meta is not None:
                speakers.add(speaker_id(TAG, str(meta["speaker_id"])))
    return speakers


def _drop_speakers(utts: list[Utterance], held_out: set[str], skips: SkipLog) -> list[Utterance]:
    """Train utterances of speakers not in a held-out split; the others are counted skips."""
    kept = []
    for utt in utts:
        if utt.speaker in held_out:
            skips.skip(utt.utt_id, "speaker also in valid/test")
        else:
            kept.append(utt)
    return kept
