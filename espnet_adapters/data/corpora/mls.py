"""Multilingual LibriSpeech (MLS, OpenSLR 94): read-aloud LibriVox audiobooks, 8 languages.

Layout, one folder per language and release under the root (``MLS`` in db.sh)::

    mls_<language>[_opus]/metainfo.txt                 speaker | gender | partition | ...
    mls_<language>[_opus]/{train,dev,test}/transcripts.txt   <spk>_<book>_<seg><TAB>text
    mls_<language>[_opus]/{train,dev,test}/audio/<spk>/<book>/<spk>_<book>_<seg>.flac|.opus
    mls_<language>[_opus]/train/limited_supervision/{1hr/0..5,9hr}/handles.txt

MLS is released twice, as lossless flac (``mls_<language>``) and as lossy opus
(``mls_<language>_opus``), with the same splits and transcripts.  Whichever is
present is used; when both are, flac wins: it is the original signal, and the
opus copy only saves disk space.

Transcripts are already lowercase without punctuation, so only layout is cleaned.
``segments.txt`` is not read: its times locate each segment in the LibriVox source
recording, not in our per-segment files, so durations come from the audio itself.
Dev and test speakers are disjoint from train by construction of the corpus.

``--mls_limited 1h|9h`` trains on the corpus's limited-supervision subsets (the
1-hour set is the union of the six 10-minute folds ``1hr/*``; ``9hr`` is the
separate 9-hour list, which, as in Libri-light, makes the 10-hour set together
with the 1-hour folds).  Dev and test are never limited.
"""

from __future__ import annotations

import logging
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
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

NAME = "mls"
TAG = "mls"
DB_VAR = "MLS"
LANGS = {
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "it": "italian",
    "nl": "dutch",
    "pl": "polish",
    "pt": "portuguese",
}

# <speaker>_<book>_<segment>, e.g. 1595_1217_000005.
_UTT = re.compile(r"([0-9A-Za-z]+)_([0-9A-Za-z]+)_([0-9A-Za-z]+)")


def splits(options: PrepOptions) -> tuple[str, ...]:
    """MLS ships exactly our three splits (``--mls_limited`` narrows train, it adds no split)."""
    return ("train", "dev", "test")


def release_dir(root: Path, locale: str) -> tuple[Path, str]:
    """The release folder of ``locale`` and its audio suffix (flac preferred over opus)."""
    for folder, suffix in ((f"mls_{locale}", ".flac"), (f"mls_{locale}_opus", ".opus")):
        if (root / folder).is_dir():
            return root / folder, suffix
    raise UserInputError(f"{DB_VAR}={root}: neither mls_{locale} nor mls_{locale}_opus found")


def limited_handles(train_dir: Path, limited: str) -> set[str] | None:
    """Native utterance ids of the ``1h``/``9h`` subset, or None for the full train set."""
    if not limited:
        return None
    supervision = train_dir / "limited_supervision"
    if limited == "1h":
        files = sorted(supervision.glob("1hr/*/handles.txt"))
        if not files:
            raise UserInputError(f"{supervision / '1hr'}: no */handles.txt (needed by --mls_limited 1h)")
    elif limited == "9h":
        files = [supervision / "9hr" / "handles.txt"]
        if not files[0].is_file():
            raise UserInputError(f"{files[0]}: not found (needed by --mls_limited 9h)")
    else:
        raise UserInputError(f"--mls_limited {limited!r}: expected '', '1h' or '9h'")
    return {line.strip() for path in files for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def speaker_genders(metainfo: Path) -> dict[str, str]:
    """Native speaker -> ``m``/``f`` from the ``SPEAKER | GENDER | ...`` table (one row per book)."""
    if not metainfo.is_file():
        logger.warning("%s not found: speakers get no gender", metainfo)
        return {}
    genders: dict[str, str] = {}
    for line in metainfo.read_text(encoding="utf-8").splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) >= 2 and fields[1].lower() in ("m", "f"):
            genders.setdefault(fields[0], fields[1].lower())
    return genders


def prepare(root: Path, lang: str, split: str, skips: SkipLog, options: PrepOptions) -> list[Utterance]:
    """The utterances of ``split`` (``train``/``dev``/``test``) of the MLS language ``lang``."""
    release, suffix = release_dir(Path(root), corpus_locale(sys.modules[__name__], lang))
    logger.info("MLS %s: reading %s (%s audio)", lang, release, suffix[1:])
    split_dir = release / split
    wanted = limited_handles(split_dir, options.mls_limited) if split == "train" else None
    genders = speaker_genders(release / "metainfo.txt")
    seen: set[str] = set()
    utts = []
    for where, native, text in read_tab_transcripts(split_dir / "transcripts.txt", skips):
        if wanted is not None and native not in wanted:
            continue
        seen.add(native)
        match = _UTT.fullmatch(native)
        if match is None:
            skips.skip(where, "malformed utterance id", native)
            continue
        spk, book, seg = match.groups()
        audio = split_dir / "audio" / spk / book / f"{native}{suffix}"
        duration = probe_audio(audio, where, skips)
        if duration is None:
            continue
        speaker = speaker_id(TAG, spk)
        utts.append(Utterance(
            utt_id=utt_id(speaker, book, seg), speaker=speaker, audio=str(audio.absolute()),
            text=text, lang=lang, duration=duration, gender=genders.get(spk),
        ))
    if wanted is not None and (unused := wanted - seen):
        logger.warning("--mls_limited %s: %d of %d handles are not usable lines of %s, e.g. %s", options.mls_limited,
                       len(unused), len(wanted), split_dir / "transcripts.txt", min(unused))
    return utts
