"""Mozilla Common Voice: one locale of a ``cv-corpus-<version>`` release.

Layout under the root (``COMMONVOICE`` in db.sh, the ``cv-corpus-<version>`` folder)::

    <locale>/{train,dev,test}.tsv        the official splits (validated clips only)
    <locale>/{validated,invalidated,other}.tsv ...   not read
    <locale>/clips/<path>                48 kHz mp3

Why columns are found by header name: the table grew across releases, from v1's
``client_id path sentence up_votes down_votes age gender accent`` to v17's
``client_id path sentence_id sentence sentence_domain up_votes down_votes age gender
accents variant locale segment``; positions shift, names do not.  Only
``client_id``, ``path`` and ``sentence`` are required.

Speakers.  ``client_id`` is the speaker, as in every Common Voice recipe (one
contributor account; a person recording under two accounts counts twice).  It is
a 128-hex-digit SHA-512, cut here to its first 16 digits (64 bits) to keep ids
readable: two contributors of a locale collide with probability about n²/2⁶⁵,
negligible for the ≤10⁶ contributors of the largest locale.  The official
train/dev/test are speaker-disjoint by construction (CorporaCreator).

Votes.  ``--cv_min_votes`` keeps rows with ``up_votes - down_votes >=`` it; the
default 0 keeps the official splits whole (their clips are validated already).

Audio.  ``wav.scp`` holds the absolute mp3 path: libsndfile decodes mp3 and the
feature extractor resamples 48 → 16 kHz, so no converted copy of the corpus is
written.  The transcript is the ``sentence`` as prompted, cased and punctuated
(Whisper's own target style); only layout is cleaned.
"""

from __future__ import annotations

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

NAME = "commonvoice"
TAG = "cv"
DB_VAR = "COMMONVOICE"
LANGS = {
    "bn": "bn",
    "en": "en",
    "hi": "hi",
    "it": "it",
    "ml": "ml",
    "mr": "mr",
    "pa": "pa-IN",
    "ta": "ta",
    "te": "te",
    "ur": "ur",
}

REQUIRED_COLUMNS = ("client_id", "path", "sentence")
# Releases up to v15 say male/female; later ones male_masculine/female_feminine
# (plus intersex, transgender, non-binary, do_not_wish_to_say: no Kaldi m/f).
_GENDERS = {"male": "m", "male_masculine": "m", "female": "f", "female_feminine": "f"}
_CLIENT_ID_CHARS = 16


def splits(options: PrepOptions) -> tuple[str, ...]:
    return ("train", "dev", "test")


def locale_dir(root: Path, lang: str) -> Path:
    """``<root>/<locale>``, or an error saying what the root should be."""
    locale = corpus_locale(sys.modules[__name__], lang)
    folder = Path(root) / locale
    if not folder.is_dir():
        raise UserInputError(
            f"{DB_VAR}={root}: no folder {locale}/ (set it to the cv-corpus-<version> folder holding the locales)"
        )
    return folder


def enough_votes(row: dict[str, str], where: str, skips: SkipLog, min_votes: int) -> bool:
    """Whether ``up_votes - down_votes >= min_votes``; a row failing it is counted as a skip."""
    if "up_votes" not in row or "down_votes" not in row:
        if min_votes > 0:
            raise UserInputError(f"{where}: no up_votes/down_votes columns, so --cv_min_votes cannot be applied")
        return True
    try:
        net = int(row["up_votes"]) - int(row["down_votes"])
    except ValueError:
        skips.skip(where, "non-numeric votes", f"up {row['up_votes']!r}, down {row['down_votes']!r}")
        return False
    if net < min_votes:
        skips.skip(where, f"net votes below {min_votes}", str(net))
        return False
    return True


def row_utterance(row: dict[str, str], where: str, locale: Path, lang: str, skips: SkipLog) -> Utterance | None:
    """The utterance of one TSV row, or None once its problem is counted as a skip."""
    clip = Path(row["path"])
    try:
        speaker = speaker_id(TAG, row["client_id"][:_CLIENT_ID_CHARS])
        utt = utt_id(speaker, clip.stem)
    except ValueError:
        skips.skip(where, "unusable client_id or path", f"{row['client_id']!r} {row['path']!r}")
        return None
    text = clean_transcript(row["sentence"])
    if not text:
        skips.skip(where, "empty transcript", row["path"])
        return None
    audio = locale / "clips" / clip
    duration = probe_audio(audio, where, skips)
    if duration is None:
        return None
    return Utterance(
        utt_id=utt, speaker=speaker, audio=str(audio.absolute()), text=text, lang=lang,
        duration=duration, gender=_GENDERS.get(row.get("gender", "").strip().lower()),
    )


def prepare(root: Path, lang: str, split: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The utterances of ``<locale>/<split>.tsv`` (``train``/``dev``/``test``)."""
    locale = locale_dir(root, lang)
    utts = []
    for where, row in read_tsv(locale / f"{split}.tsv", skips, required=REQUIRED_COLUMNS, unique="path"):
        if not enough_votes(row, where, skips, options.cv_min_votes):
            continue
        utt = row_utterance(row, where, locale, lang, skips)
        if utt is not None:
            utts.append(utt)
    return utts
