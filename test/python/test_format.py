"""The format stage (format_wav_scp + combine_formatted) on good and bad input.

Bad input must give a logged, counted skip naming the wav.scp file and line, or a
clear error; never a traceback and never a half-written data dir.
"""

from __future__ import annotations

import logging
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from espnet_adapters.bin import combine_formatted, format_wav_scp
from espnet_adapters.data.kaldi import read_map, validate_data_dir


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


@pytest.fixture()
def messy_dir(tmp_path: Path) -> Path:
    """A data dir with good, resampled, missing, corrupt, short and empty-text utterances."""
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "good.wav", _tone(1.0, 16000), 16000)
    sf.write(audio / "stereo44k.flac", _tone(1.5, 44100, channels=2), 44100)
    sf.write(audio / "short.wav", _tone(0.05, 16000), 16000)
    sf.write(audio / "emptytext.wav", _tone(1.0, 16000), 16000)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage")
    data = tmp_path / "data" / "xx_test"
    data.mkdir(parents=True)
    utts = {
        "s1-a_good": f"{audio / 'good.wav'}",
        "s1-b_stereo": f"{audio / 'stereo44k.flac'}",
        "s1-c_missing": f"{audio / 'missing.wav'}",
        "s1-d_corrupt": f"{audio / 'corrupt.wav'}",
        "s1-e_short": f"{audio / 'short.wav'}",
        "s1-f_empty": f"{audio / 'emptytext.wav'}",
        "s1-g_pipe": f"sox {audio / 'stereo44k.flac'} -t wav -r 8000 - |",
    }
    _write_lines(data / "wav.scp", [f"{u} {p}" for u, p in utts.items()])
    _write_lines(data / "text", [f"{u} ciao mondo" if u != "s1-f_empty" else u for u in utts])
    _write_lines(data / "utt2spk", [f"{u} s1" for u in utts])
    _write_lines(data / "utt2lang", [f"{u} it" for u in utts])
    _write_lines(data / "spk2utt", ["s1 " + " ".join(utts)])
    return data


def _format(data: Path, tmp_path: Path) -> tuple[Path, int]:
    keys = tmp_path / "keys"
    keys.write_text((data / "utt2spk").read_text(encoding="utf-8"), encoding="utf-8")
    job = tmp_path / "audio_out" / "format.1"
    assert format_wav_scp.main(["--in_dir", str(data), "--keys", str(keys), "--out_dir", str(job)]) == 0
    out = tmp_path / "dump" / "raw" / data.name
    status = combine_formatted.main(["--in_dir", str(data), "--job_dirs", str(job), "--out_dir", str(out)])
    return out, status


def test_bad_utterances_are_skipped_and_counted(messy_dir: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    out, status = _format(messy_dir, tmp_path)
    assert status == 0
    assert validate_data_dir(out) == []
    kept = read_map(out / "wav.scp")
    assert sorted(kept) == ["s1-a_good", "s1-b_stereo", "s1-g_pipe"]
    dropped = read_map(out.with_name("xx_test.dropped"))
    assert set(dropped) == {"s1-c_missing", "s1-d_corrupt", "s1-e_short", "s1-f_empty"}
    assert "wav.scp:3" in dropped["s1-c_missing"] and "not found" in dropped["s1-c_missing"]
    assert "wav.scp:4" in dropped["s1-d_corrupt"]
    assert dropped["s1-f_empty"] == "empty transcript"
    assert "kept 3 of 7 utterances; dropped: 1 empty transcript, 1 too short, 2 unreadable" in caplog.text
    # Everything is mono 16 kHz now, with the right duration.
    utt2dur = read_map(out / "utt2dur")
    for utt, entry in kept.items():
        rate, audio = kaldiio.load_mat(entry)
        assert rate == 16000 and audio.ndim == 1
        assert len(audio) / 16000 == pytest.approx(float(utt2dur[utt]), abs=1e-3)
    assert float(utt2dur["s1-b_stereo"]) == pytest.approx(1.5, abs=0.01)


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path: Path, caplog) -> None:
    data = tmp_path / "data" / "yy_test"
    data.mkdir(parents=True)
    _write_lines(data / "wav.scp", [f"s1-a {tmp_path / 'nope.wav'}"])
    _write_lines(data / "text", ["s1-a testo"])
    _write_lines(data / "utt2spk", ["s1-a s1"])
    _write_lines(data / "spk2utt", ["s1 s1-a"])
    out, status = _format(data, tmp_path)
    assert status == 1
    assert not out.exists()
    assert "no usable utterance left (dropped: 1 unreadable)" in caplog.text


def test_duplicate_id_names_file_and_line(messy_dir: Path, tmp_path: Path, caplog) -> None:
    with open(messy_dir / "wav.scp", "a", encoding="utf-8") as handle:
        handle.write(f"s1-a_good {tmp_path / 'audio' / 'good.wav'}\n")
    keys = tmp_path / "keys"
    keys.write_text("s1-a_good s1\n", encoding="utf-8")
    job = tmp_path / "job"
    status = format_wav_scp.main(["--in_dir", str(messy_dir), "--keys", str(keys), "--out_dir", str(job)])
    assert status == 1
    assert not job.exists()
    assert f"{messy_dir / 'wav.scp'}:8" in caplog.text and "s1-a_good" in caplog.text
