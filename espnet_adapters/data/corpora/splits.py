"""Speaker-independent re-splitting, and the sentence-leak guard.

Why re-split at all: some corpora ship no test set (IndicVoices has train and
valid only), or ship splits that share speakers.  A WER measured on speakers the
model was adapted to says little about new users, so held-out sets must be
*speaker-independent*: every speaker goes, with all of their utterances, to
exactly one split.

Why fractions are by **duration**, not utterance count: speakers differ widely in
how much and how long they talk (an extempore IndicVoices speaker may have ten
times the audio of a read-speech one), and hours are what a corpus table reports
and what training cost and test-set variance follow.  Counting utterances would
let one talkative speaker blow "10 % dev" up to a third of the audio.

How: speakers are shuffled with the seed, then each goes to the split whose
target duration is furthest from reached (largest deficit in seconds).  When as
many speakers remain as splits are still empty, only the empty splits may take
them, so every split gets at least one speaker.  The result depends only on the
utterances and the seed, never on input order.

Sentence leaks.  Read-speech corpora record the same prompt from many speakers,
so a speaker-independent split can still put one sentence in train and test, and
a model that memorised it looks better than it is.  :func:`drop_shared_sentences`
removes such sentences from *train* (held-out sets are small and precious; train
can spare them), comparing texts after the scoring normaliser so punctuation or
case variants count as the same sentence.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable

from espnet_adapters.data.corpora.common import Utterance
from espnet_adapters.scoring.normalize import normalize_text
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

FRACTION_TOLERANCE = 1e-6
TRAIN = "train"


def parse_fractions(spec: str) -> dict[str, float]:
    """``"train:0.8,dev:0.1,test:0.1"`` -> ``{"train": 0.8, "dev": 0.1, "test": 0.1}``.

    Names must be unique and non-empty, fractions positive and summing to 1
    (within 1e-6); anything else is a :class:`UserInputError` quoting the spec.
    """
    fractions: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = (part.strip() for part in item.partition(":"))
        if not sep or not name or name.split() != [name]:
            raise UserInputError(f"split fractions {spec!r}: expected 'name:fraction,...', got {item.strip()!r}")
        if name in fractions:
            raise UserInputError(f"split fractions {spec!r}: split {name!r} given twice")
        try:
            fraction = float(value)
        except ValueError:
            raise UserInputError(f"split fractions {spec!r}: {value!r} is not a number") from None
        if not math.isfinite(fraction) or fraction <= 0:
            raise UserInputError(f"split fractions {spec!r}: fraction of {name!r} must be positive, got {value}")
        fractions[name] = fraction
    total = sum(fractions.values())
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise UserInputError(f"split fractions {spec!r}: fractions sum to {total:g}, not 1")
    return fractions


def resplit_by_speaker(utts: list[Utterance], fractions: dict[str, float], seed: int) -> dict[str, list[Utterance]]:
    """Split ``utts`` into ``fractions`` (by duration), whole speakers per split.

    Splits come back in the order of ``fractions``.  When there is a ``train``
    split, train utterances whose normalised text is in another split are dropped
    (counted in the log), see :func:`drop_shared_sentences`.

    Raises:
        UserInputError: fewer speakers than splits.
    """
    by_speaker: dict[str, list[Utterance]] = {}
    for utt in sorted(utts, key=lambda u: u.utt_id):
        by_speaker.setdefault(utt.speaker, []).append(utt)
    if len(by_speaker) < len(fractions):
        raise UserInputError(
            f"cannot split {len(by_speaker)} speakers into {len(fractions)} speaker-disjoint splits"
            f" ({', '.join(fractions)}): every split needs at least one speaker"
        )
    assignment = _assign_speakers(
        {spk: sum(u.duration for u in spk_utts) for spk, spk_utts in by_speaker.items()}, fractions, seed
    )
    result = {name: [u for spk in speakers for u in by_speaker[spk]] for name, speakers in assignment.items()}
    if TRAIN in result and len(result) > 1:
        held_out = [split for name, split in result.items() if name != TRAIN]
        result[TRAIN], dropped = drop_shared_sentences(result[TRAIN], held_out)
        logger.info("re-split: dropped %d train utterances whose sentence is in a held-out split", dropped)
    for name, split in result.items():
        logger.info(
            "re-split %s: %d speakers, %d utterances, %.3f h (target %.1f %%)",
            name, len(assignment[name]), len(split), sum(u.duration for u in split) / 3600, 100 * fractions[name],
        )
    return result


def _assign_speakers(durations: dict[str, float], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Speaker -> split by largest remaining deficit, every split non-empty (see module doc)."""
    speakers = sorted(durations)
    random.Random(seed).shuffle(speakers)
    total = sum(durations.values())
    assigned: dict[str, list[str]] = {name: [] for name in fractions}
    filled = dict.fromkeys(fractions, 0.0)
    for index, spk in enumerate(speakers):
        empty = [name for name in fractions if not assigned[name]]
        remaining = len(speakers) - index
        candidates = empty if remaining <= len(empty) else list(fractions)
        name = max(candidates, key=lambda n: fractions[n] * total - filled[n])
        assigned[name].append(spk)
        filled[name] += durations[spk]
    return assigned


def sentence_key(utt: Utterance, lang: str | None = None) -> str:
    """What makes two utterances "the same sentence": the scoring-normalised text."""
    return normalize_text(utt.text, lang or utt.lang)


def drop_shared_sentences(
    train: list[Utterance], held_out: Iterable[Iterable[Utterance]], lang: str | None = None
) -> tuple[list[Utterance], int]:
    """Train utterances whose sentence is not in any held-out set, and how many were dropped.

    Texts are compared after :func:`~espnet_adapters.scoring.normalize.normalize_text`
    with ``lang`` (``None``: each utterance's own language).  Texts that normalise
    to nothing (punctuation only) never count as shared.
    """
    held = {sentence_key(u, lang) for split in held_out for u in split}
    held.discard("")
    kept = [u for u in train if sentence_key(u, lang) not in held]
    return kept, len(train) - len(kept)
