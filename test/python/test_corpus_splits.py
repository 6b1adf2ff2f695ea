"""Speaker-independent re-splitting, fraction parsing and the sentence-leak guard.

No audio is needed: the splitter only looks at speakers, durations and texts.
"""

from __future__ import annotations

import random

import pytest

from espnet_adapters.data.corpora.common import Utterance
from espnet_adapters.data.corpora.splits import drop_shared_sentences, parse_fractions, resplit_by_speaker
from espnet_adapters.utils.cli import UserInputError

FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def _utt(speaker: str, index: int, duration: float, text: str | None = None) -> Utterance:
    return Utterance(
        utt_id=f"{speaker}-{index:03d}", speaker=speaker, audio=f"/a/{speaker}-{index}.wav",
        text=text or f"sentence {speaker} {index}", lang="hi", duration=duration,
    )


def _corpus(speakers: int, seed: int = 0) -> list[Utterance]:
    """Speakers with 2-12 utterances of 1-8 s each: unequal, as in real corpora."""
    rng = random.Random(seed)
    return [
        _utt(f"spk{s:03d}", i, rng.uniform(1.0, 8.0))
        for s in range(speakers)
        for i in range(rng.randint(2, 12))
    ]


def _hours(utts: list[Utterance]) -> float:
    return sum(u.duration for u in utts)


def test_no_speaker_in_two_splits_and_nothing_lost() -> None:
    utts = _corpus(60)
    result = resplit_by_speaker(utts, FRACTIONS, seed=3)
    assert list(result) == ["train", "dev", "test"]
    owners: dict[str, str] = {}
    for name, split in result.items():
        for utt in split:
            assert owners.setdefault(utt.speaker, name) == name, f"{utt.speaker} in {owners[utt.speaker]} and {name}"
    assert sorted(u.utt_id for split in result.values() for u in split) == sorted(u.utt_id for u in utts)


def test_fractions_by_duration_are_roughly_respected() -> None:
    utts = _corpus(200)
    result = resplit_by_speaker(utts, FRACTIONS, seed=1)
    total = _hours(utts)
    for name, fraction in FRACTIONS.items():
        assert _hours(result[name]) / total == pytest.approx(fraction, abs=0.02)


def test_deterministic_for_a_seed_whatever_the_input_order() -> None:
    utts = _corpus(40)
    shuffled = list(utts)
    random.Random(7).shuffle(shuffled)

    def speakers(result: dict[str, list[Utterance]]) -> dict[str, set[str]]:
        return {name: {u.speaker for u in split} for name, split in result.items()}

    first = resplit_by_speaker(utts, FRACTIONS, seed=5)
    assert speakers(resplit_by_speaker(shuffled, FRACTIONS, seed=5)) == speakers(first)
    assert first == resplit_by_speaker(utts, FRACTIONS, seed=5)
    assert speakers(resplit_by_speaker(utts, FRACTIONS, seed=6)) != speakers(first)


def test_every_split_gets_a_speaker_even_with_tiny_fractions() -> None:
    utts = _corpus(3)
    result = resplit_by_speaker(utts, {"train": 0.98, "dev": 0.01, "test": 0.01}, seed=0)
    assert all(len({u.speaker for u in split}) == 1 for split in result.values())


def test_fewer_speakers_than_splits_is_a_clear_error() -> None:
    with pytest.raises(UserInputError, match="cannot split 2 speakers into 3 speaker-disjoint splits"):
        resplit_by_speaker(_corpus(2), FRACTIONS, seed=0)


def test_resplit_drops_train_sentences_of_held_out_splits(caplog) -> None:
    # Every speaker reads the same prompt once: it can stay in dev/test only.
    utts = _corpus(30) + [_utt(f"spk{s:03d}", 999, 2.0, "Shared prompt, read by all!") for s in range(30)]
    caplog.set_level("INFO")
    result = resplit_by_speaker(utts, FRACTIONS, seed=2)
    assert not any(u.text.startswith("Shared") for u in result["train"])
    assert any(u.text.startswith("Shared") for u in result["test"])
    dropped = sum(1 for u in utts if u.text.startswith("Shared")) - sum(
        1 for split in result.values() for u in split if u.text.startswith("Shared")
    )
    assert f"dropped {dropped} train utterances whose sentence is in a held-out split" in caplog.text


def test_drop_shared_sentences_compares_normalised_text() -> None:
    train = [_utt("a", 1, 1.0, "Hello, World!"), _utt("a", 2, 1.0, "another one"), _utt("a", 3, 1.0, "...")]
    held_out = [[_utt("b", 1, 1.0, "hello world")], [_utt("c", 1, 1.0, "…")]]
    kept, dropped = drop_shared_sentences(train, held_out, "hi")
    assert (dropped, [u.utt_id for u in kept]) == (1, ["a-002", "a-003"])


def test_parse_fractions() -> None:
    assert parse_fractions("train:0.8, dev:0.1 ,test:0.1") == FRACTIONS
    assert sum(parse_fractions("a:0.3333333,b:0.3333333,c:0.3333334").values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected 'name:fraction"),
        ("train", "expected 'name:fraction"),
        ("train:0.5,:0.5", "expected 'name:fraction"),
        ("my train:1", "expected 'name:fraction"),
        ("train:abc", "'abc' is not a number"),
        ("train:0.8,train:0.2", "split 'train' given twice"),
        ("train:1.2,dev:-0.2", "fraction of 'dev' must be positive"),
        ("train:1,dev:0", "fraction of 'dev' must be positive"),
        ("train:0.8,dev:0.1", "fractions sum to 0.9, not 1"),
        ("train:nan,dev:1", "must be positive"),
    ],
)
def test_parse_fractions_errors(spec: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message) as err:
        parse_fractions(spec)
    assert repr(spec) in str(err.value)
