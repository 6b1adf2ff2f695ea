"""FLEURS (Google, CC-BY-4.0): read FLoRes-101 sentences, 102 languages, 16 kHz.

Layout under the root (``FLEURS`` in db.sh; ``data/`` of the Hugging Face
``google/fleurs`` repository)::

    <locale>/{train,dev,test}.tsv          no header; 7 tab-separated columns
    <locale>/audio/{train,dev,test}.tar.gz as downloaded; each holds <split>/<file_name>
    <locale>/audio/{train,dev,test}/       ... so extracting it in audio/ gives this

The columns are ``id file_name raw_transcription transcription words num_samples
gender``.  Audio is read only from the extracted folders (reading members out of a
tar.gz would decompress the archive once per utterance); an archive left packed
is an error that says how to extract it.

Transcript: ``raw_transcription``, the FLoRes sentence as read, cased and
punctuated: that is what Whisper is trained to output, and the scoring normaliser
removes case and punctuation from reference and hypothesis alike.
``transcription`` is FLEURS's own lowercased, punctuation-stripped version.

Speakers.  FLEURS publishes no speaker ids: ``id`` is the FLoRes *sentence* id
(the same in every language, several readers per sentence), and one person reads
many sentences.  Neither can be turned into a speaker honestly, so every
recording is its own pseudo-speaker, ``fl-<split>_<file stem>``: always a single
person of a single gender, and, carrying the split name, never in two splits, so
the speaker-leak check cannot fire falsely.  Consequences: ``spk2utt`` has one
utterance per speaker, ``stats.json`` counts recordings as speakers, and
``--resplit`` cannot be speaker-independent for FLEURS: keep its official splits
(the dataset card states that train speakers differ from dev/test speakers; dev
and test may share speakers).  The utterance id ends in the sentence id, so the
readings of one sentence stay easy to find.

Durations come from the audio files themselves; ``num_samples`` is only checked
to be a number, since anything else means the row's columns are garbled.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from espnet_adapters.data.corpora import PrepOptions, corpus_locale
from espnet_adapters.data.corpora.common import (
    SkipLog,
    Utterance,
    clean_transcript,
    probe_audio,
    read_tsv,
    speaker_id,
    utt_id,
)
from espnet_adapters.utils.cli import UserInputError

NAME = "fleurs"
TAG = "fl"
DB_VAR = "FLEURS"
LANGS = {
    "bn": "bn_in",
    "en": "en_us",
    "gu": "gu_in",
    "hi": "hi_in",
    "it": "it_it",
    "kn": "kn_in",
    "ml": "ml_in",
    "mr": "mr_in",
    "pa": "pa_in",
    "ta": "ta_in",
    "te": "te_in",
    "ur": "ur_pk",
}

COLUMNS = ("id", "file_name", "raw_transcription", "transcription", "words", "num_samples", "gender")
_GENDERS = {"MALE": "m", "FEMALE": "f"}  # and OTHER


def splits(options: PrepOptions) -> tuple[str, ...]:
    return ("train", "dev", "test")


def audio_dir(root: Path, lang: str, split: str) -> Path:
    """``<locale>/audio/<split>``, or an error saying what is missing (e.g. an unextracted archive)."""
    locale = corpus_locale(sys.modules[__name__], lang)
    folder = Path(root) / locale
    if not folder.is_dir():
        raise UserInputError(
            f"{DB_VAR}={root}: no folder {locale}/ (set it to the folder holding the locale folders,"
            " data/ of the google/fleurs download)"
        )
    audio = folder / "audio" / split
    archive = folder / "audio" / f"{split}.tar.gz"
    if not audio.is_dir():
        if archive.is_file():
            command = shlex.join(["tar", "-xzf", str(archive), "-C", str(archive.parent)])
            raise UserInputError(f"{archive}: not extracted; run: {command}")
        raise UserInputError(f"{audio}: not found (nor {archive.name} next to it)")
    return audio


def row_utterance(row: dict[str, str], where: str, audio: Path, split: str, lang: str,
                  skips: SkipLog) -> Utterance | None:
    """The utterance of one TSV row, or None once its problem is counted as a skip."""
    if not row["num_samples"].strip().isdigit():
        skips.skip(where, "num_samples is not a number", repr(row["num_samples"]))
        return None
    clip = Path(row["file_name"])
    try:
        speaker = speaker_id(TAG, f"{split}_{clip.stem}")
        utt = utt_id(speaker, row["id"])
    except ValueError:
        skips.skip(where, "unusable id or file_name", f"{row['id']!r} {row['file_name']!r}")
        return None
    text = clean_transcript(row["raw_transcription"])
    if not text:
        skips.skip(where, "empty transcript", row["file_name"])
        return None
    path = audio / clip
    duration = probe_audio(path, where, skips)
    if duration is None:
        return None
    return Utterance(
        utt_id=utt, speaker=speaker, audio=str(path.absolute()), text=text, lang=lang,
        duration=duration, gender=_GENDERS.get(row["gender"].strip().upper()),
    )


def prepare(root: Path, lang: str, split: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The utterances of ``<locale>/<split>.tsv`` (``train``/``dev``/``test``)."""
    audio = audio_dir(root, lang, split)
    utts = []
    for where, row in read_tsv(audio.parent.parent / f"{split}.tsv", skips, columns=COLUMNS, unique="file_name"):
        utt = row_utterance(row, where, audio, split, lang, skips)
        if utt is not None:
            utts.append(utt)
    return utts
