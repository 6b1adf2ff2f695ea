"""The synthetic corpus: disjoint splits, stable ids, real audio, clear config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_adapters.data.synth import (
    Speaker,
    load_synth_config,
    plan_corpus,
    read_sentences,
    synthesize,
)
from espnet_adapters.utils.cli import UserInputError

REPO = Path(__file__).resolve().parents[2]


def _speakers() -> list[Speaker]:
    config = load_synth_config(REPO / "conf" / "synth.yaml")
    return list(config.speakers)


def test_splits_share_no_speaker_and_no_sentence(tmp_path: Path) -> None:
    sentences = [f"sentence number {i} here." for i in range(100)]
    plan = plan_corpus("it", sentences, _speakers(), {"train": 50, "dev": 10, "test": 20}, tmp_path, seed=3)
    assert {split: len(utts) for split, utts in plan.items()} == {"train": 50, "dev": 10, "test": 20}
    speakers = {split: {u.spk_id for u in utts} for split, utts in plan.items()}
    texts = {split: {u.text for u in utts} for split, utts in plan.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not speakers[a] & speakers[b]
        assert not texts[a] & texts[b]
    for utts in plan.values():
        for utt in utts:
            assert utt.utt_id.startswith(utt.spk_id + "-")


def test_test_set_does_not_depend_on_train_size(tmp_path: Path) -> None:
    sentences = [f"frase {i}." for i in range(200)]
    small = plan_corpus("it", sentences, _speakers(), {"train": 10, "dev": 5, "test": 20}, tmp_path, seed=1)
    large = plan_corpus("it", sentences, _speakers(), {"train": 150, "dev": 5, "test": 20}, tmp_path, seed=1)
    assert [u.utt_id for u in small["test"]] == [u.utt_id for u in large["test"]]


def test_too_few_sentences_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="only 3 available"):
        plan_corpus("hi", ["a.", "b.", "c."], _speakers(), {"train": 2, "dev": 1, "test": 1}, tmp_path, seed=1)


def test_sentence_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "xx.txt"
    path.write_text("एक वाक्य है।\n\nदूसरा।\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"xx.txt:2: empty sentence"):
        read_sentences(path)
    path.write_text("uno\r\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"xx.txt:1: control character"):
        read_sentences(path)


def test_config_rejects_unknown_split(tmp_path: Path) -> None:
    path = tmp_path / "synth.yaml"
    path.write_text(
        "voices: {hi: hi}\nnoise_dbfs: -60\nspeakers:\n"
        "  - {name: a, variant: m1, pitch: 40, rate: 150, gender: m, split: eval}\n",
        encoding="utf-8",
    )
    with pytest.raises(UserInputError, match="split must be one of"):
        load_synth_config(path)


def test_synthesized_audio_is_speech_with_noise_floor(tmp_path: Path) -> None:
    plan = plan_corpus("hi", ["भारत एक विशाल देश है।"] * 3, _speakers(), {"train": 1, "dev": 1, "test": 1}, tmp_path, 1)
    utt = plan["test"][0]
    duration = synthesize(utt, "hi", noise_dbfs=-60)
    audio, rate = sf.read(utt.wav_path, dtype="float32")
    assert rate == 22050
    assert duration == pytest.approx(len(audio) / rate)
    assert duration > 1.0
    lead = audio[: int(0.2 * rate)]  # the padding before speech: noise, not digital silence
    assert 1e-4 < float(np.sqrt(np.mean(lead**2))) < 1e-2
    assert float(np.abs(audio).max()) > 0.1
    # Deterministic and cached: a second call reuses the file.
    mtime = utt.wav_path.stat().st_mtime_ns
    assert synthesize(utt, "hi", noise_dbfs=-60) == pytest.approx(duration, abs=1e-3)
    assert utt.wav_path.stat().st_mtime_ns == mtime
