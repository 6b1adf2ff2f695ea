"""Kathbath (AI4Bharat, CC0): read speech in 12 Indian languages, m4a audio.

Layout under the root (``KATHBATH`` in db.sh)::

    <language>/<split>/transcription_n2w.txt     <file>.m4a<TAB>text
    <language>/<split>/[audio/]<id>-<speakerid>-<m|f>.m4a

Speaker and gender are only in the audio file name.  Releases differ in whether
the clips sit in the split folder or in an ``audio/`` subfolder; this is decided
per split (``audio/`` when it exists).

Transcripts come from ``transcription_n2w.txt``, where numbers are already
written out as words ("n2w", number to words): that is what the speakers said, so
training and scoring on it do not count a correctly recognised "twenty" as an
error against "20".

Native splits map to ours as train -> ``train``, valid -> ``dev``, test_unknown ->
``test`` (speakers unseen in training: the speaker-independent test) and
test_known -> ``test_known``, an extra split whose speakers are train speakers by
design (comparing it with ``test`` shows how much seen speakers help); prepare_corpus
leaves it out of the speaker-leakage check.

The ``wav.scp`` value is the absolute ``.m4a`` path: libsndfile cannot decode AAC,
so :func:`espnet_adapters.data.audio.read_audio` decodes it with ffmpeg, and
durations come from ffprobe.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from espnet_adapters.data.corpora import PrepOptions, corpus_locale
from espnet_adapters.data.corpora.common import (
    SkipLog,
    Utterance,
    probe_audio,
    read_tab_transcripts,
    speaker_id,
    utt_id,
)

NAME = "kathbath"
TAG = "kb"
DB_VAR = "KATHBATH"
LANGS = {
    "bn": "bengali",
    "gu": "gujarati",
    "hi": "hindi",
    "kn": "kannada",
    "ml": "malayalam",
    "mr": "marathi",
    "or": "odia",
    "pa": "punjabi",
    "sa": "sanskrit",
    "ta": "tamil",
    "te": "telugu",
    "ur": "urdu",
}

# Our split -> Kathbath's split folder.
NATIVE_SPLITS = {"train": "train", "dev": "valid", "test": "test_unknown", "test_known": "test_known"}

# <id>-<speakerid>-<m|f>.m4a, e.g. 844424933537866-594-f.m4a.
_FILE = re.compile(r"(?P<id>[0-9A-Za-z_]+)-(?P<speaker>[0-9A-Za-z_]+)-(?P<gender>[mfMF])\.m4a")


def splits(options: PrepOptions) -> tuple[str, ...]:
    """Our names of the four native splits, ``test_known`` last (an extra, not a held-out set)."""
    return tuple(NATIVE_SPLITS)


def audio_dir(split_dir: Path) -> Path:
    """Where the clips of a split are: its ``audio/`` subfolder if present, else the split folder."""
    sub = split_dir / "audio"
    return sub if sub.is_dir() else split_dir


def prepare(root: Path, lang: str, split: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The utterances of ``split`` (``train``/``dev``/``test``/``test_known``) of language ``lang``."""
    split_dir = Path(root) / corpus_locale(sys.modules[__name__], lang) / NATIVE_SPLITS[split]
    clips = audio_dir(split_dir)
    utts = []
    for where, name, text in read_tab_transcripts(split_dir / "transcription_n2w.txt", skips):
        match = _FILE.fullmatch(name)
        if match is None:
            skips.skip(where, "file name not <id>-<speaker>-<m|f>.m4a", name)
            continue
        audio = clips / name
        duration = probe_audio(audio, where, skips)
        if duration is None:
            continue
        # Speaker numbers are not known to be unique across languages: the language is part
        # of the id, so a pooled multilingual set never merges two people.
        speaker = speaker_id(TAG, f"{lang}_{match['speaker']}")
        utts.append(Utterance(
            utt_id=utt_id(speaker, match["id"]), speaker=speaker, audio=str(audio.absolute()),
            text=text, lang=lang, duration=duration, gender=match["gender"].lower(),
        ))
    return utts
