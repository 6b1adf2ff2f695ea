"""Speed perturbation: new ids and speakers per factor, sox pipes that format reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_adapters.bin import speed_perturb
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, validate_data_dir, write_data_dir


def test_speed_perturbed_dir_is_valid_and_audio_has_scaled_length(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    sf.write(audio, (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    src = tmp_path / "src"
    write_data_dir(
        src,
        wav_scp={"hi_m1-u1": str(audio), "hi_m1-u2": f"sox {str(audio)!r} -t wav - |"},
        text={"hi_m1-u1": "एक", "hi_m1-u2": "दो"},
        utt2spk={"hi_m1-u1": "hi_m1", "hi_m1-u2": "hi_m1"},
        utt2lang={"hi_m1-u1": "hi", "hi_m1-u2": "hi"},
        utt2dur={"hi_m1-u1": "1.000", "hi_m1-u2": "1.000"},
        spk2gender={"hi_m1": "m"},
    )
    out = tmp_path / "sp"
    assert speed_perturb.main(["--in_dir", str(src), "--out_dir", str(out), "--factors", "0.9", "1.0", "1.1"]) == 0
    assert validate_data_dir(out) == []
    utt2spk = read_map(out / "utt2spk")
    assert len(utt2spk) == 6
    assert utt2spk["sp0.9-hi_m1-u1"] == "sp0.9-hi_m1" and utt2spk["hi_m1-u2"] == "hi_m1"
    assert read_map(out / "spk2gender")["sp1.1-hi_m1"] == "m"
    wav = read_map(out / "wav.scp")
    for utt, factor in (("sp0.9-hi_m1-u1", 0.9), ("sp1.1-hi_m1-u2", 1.1), ("hi_m1-u1", 1.0)):
        samples = read_audio(wav[utt], 16000, utt)
        assert len(samples) / 16000 == pytest.approx(1.0 / factor, abs=0.01)
        assert float(read_map(out / "utt2dur")[utt]) == pytest.approx(1.0 / factor, abs=0.001)
        # Decoding a pipe twice gives the same samples (sox's dither is seeded).
        np.testing.assert_array_equal(read_audio(wav[utt], 16000, utt), samples)


def test_bad_factors_are_rejected(tmp_path: Path, caplog) -> None:
    assert speed_perturb.main(["--in_dir", str(tmp_path), "--out_dir", str(tmp_path / "o"), "--factors", "0"]) == 1
    assert "distinct positive numbers" in caplog.text
