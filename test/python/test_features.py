"""Trimmed Whisper log-mel features: exact restoration, shapes, the dump_feats entry point."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from transformers import WhisperFeatureExtractor

from espnet_adapters.bin import dump_feats
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.features import SAMPLE_RATE, logmel, pad_logmel, signal_frames, stack_features


@pytest.fixture(scope="module")
def extractor(whisper_base_dir: Path) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor.from_pretrained(whisper_base_dir)


def _speechlike(seconds: float, seed: int, amplitude: float = 0.1) -> np.ndarray:
    """Noise under a slow envelope, so frames differ in level as speech does."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 20, n))
    return (amplitude * envelope * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [0.001, 0.3, 7.1, 29.9, 29.99, 30.0])
def test_restored_features_equal_the_extractor_output(
    extractor: WhisperFeatureExtractor, n_mels: int, seconds: float
) -> None:
    fe = extractor if n_mels == 80 else WhisperFeatureExtractor(feature_size=128)  # large-v3's config
    audio = _speechlike(seconds, seed=int(seconds * 100))
    full = fe(audio, sampling_rate=SAMPLE_RATE).input_features[0]
    trimmed = logmel(audio, fe)
    assert trimmed.dtype == np.float32 and trimmed.shape == (min(3000, signal_frames(len(audio), fe) + 1), n_mels)
    # Bit for bit, not merely within 1e-6: the padding frame is stored, not recomputed.
    np.testing.assert_array_equal(pad_logmel(trimmed), full)


def test_padding_value_is_not_always_max_minus_two(extractor: WhisperFeatureExtractor) -> None:
    """Why the padding frame is stored: for a very quiet signal the floor is -1.5, not max - 2."""
    full = extractor(_speechlike(2.0, 1, amplitude=1e-7), sampling_rate=SAMPLE_RATE).input_features[0]
    assert full[:, -1].min() == pytest.approx(-1.5) and full.max() - 2.0 < -1.6
    np.testing.assert_array_equal(pad_logmel(logmel(_speechlike(2.0, 1, amplitude=1e-7), extractor)), full)


def test_trimmed_frames_are_exactly_those_that_see_the_signal(extractor: WhisperFeatureExtractor) -> None:
    audio = _speechlike(1.0, 3)
    full = extractor(audio, sampling_rate=SAMPLE_RATE).input_features[0]
    kept = signal_frames(len(audio), extractor)
    assert np.all(full[:, kept:] == full[0, -1])  # everything after is padding
    assert np.any(full[:, kept - 1] != full[0, -1])  # the last signal frame is not


def test_stack_features_shape(extractor: WhisperFeatureExtractor) -> None:
    batch = stack_features([logmel(_speechlike(s, 5), extractor) for s in (0.5, 3.0, 30.0)])
    assert tuple(batch.shape) == (3, 80, 3000) and str(batch.dtype) == "torch.float32"


def test_audio_longer_than_30_s_is_rejected(extractor: WhisperFeatureExtractor) -> None:
    with pytest.raises(UserInputError, match=r"wav.scp:7: 30.01 s of audio is longer than Whisper's 30 s window"):
        logmel(np.zeros(480160, dtype=np.float32), extractor, where="wav.scp:7")


def test_dump_feats_writes_ark_scp_and_shapes(tmp_path: Path, whisper_base_dir: Path,
                                              extractor: WhisperFeatureExtractor) -> None:
    data = tmp_path / "data"
    data.mkdir()
    durations = {"utt_a": 0.5, "utt_b": 2.25, "utt_c": 4.0}
    wav_scp = {}
    for index, (utt, seconds) in enumerate(durations.items()):
        wav = tmp_path / f"{utt}.wav"
        sf.write(wav, _speechlike(seconds, index), SAMPLE_RATE, subtype="FLOAT")
        wav_scp[utt] = str(wav)
    write_map(data / "wav.scp", wav_scp)
    write_map(tmp_path / "keys", {"utt_a": "", "utt_c": ""})
    out = tmp_path / "feats.1"
    assert dump_feats.main(["--data_dir", str(data), "--keys", str(tmp_path / "keys"),
                            "--whisper_model", str(whisper_base_dir), "--out_dir", str(out)]) == 0
    shapes = read_map(out / "feats_shape")
    scp = read_map(out / "feats.scp")
    assert sorted(scp) == sorted(shapes) == ["utt_a", "utt_c"]
    for utt in scp:
        feats = kaldiio.load_mat(scp[utt])
        frames = signal_frames(int(durations[utt] * SAMPLE_RATE), extractor) + 1
        assert shapes[utt] == f"{frames},80" and feats.shape == (frames, 80) and feats.dtype == np.float32
        audio = sf.read(wav_scp[utt], dtype="float32")[0]
        np.testing.assert_array_equal(pad_logmel(feats), extractor(audio, sampling_rate=SAMPLE_RATE).input_features[0])
    assert not list(tmp_path.glob(".feats.1.*"))  # no temp dir left behind

    write_map(tmp_path / "bad_keys", {"utt_x": ""})
    assert dump_feats.main(["--data_dir", str(data), "--keys", str(tmp_path / "bad_keys"),
                            "--whisper_model", str(whisper_base_dir), "--out_dir", str(tmp_path / "x")]) == 1
