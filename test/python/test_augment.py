"""Noise / reverberation copies of a training set (stage 2, --augment_config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fixtures.recipe import new_recipe, recipe_env

from espnet_adapters.bin import augment_data_dir
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.augment import AugmentConfig, CopySpec, add_noise, colored_noise, plan_copy, speech_power
from espnet_adapters.data.kaldi import read_map, validate_data_dir, write_data_dir
from espnet_adapters.utils.cli import UserInputError


def _speech(seconds: float = 1.5) -> np.ndarray:
    """A tone burst between two silences, as a synthetic sentence looks."""
    t = np.arange(int(16000 * seconds)) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) * ((t > 0.25) & (t < seconds - 0.25))
    return audio.astype(np.float32)


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_is_added_at_the_snr_of_the_speech(snr: float, color: str) -> None:
    clean = _speech()
    noisy = add_noise(clean, snr, color, seed=3)
    active = np.abs(clean) > 0
    speech = float(np.mean(clean[(np.arange(len(clean)) >= 4000) & (np.arange(len(clean)) < 20000)] ** 2))
    measured = 10 * np.log10(speech / np.mean((noisy - clean) ** 2))
    assert measured == pytest.approx(snr, abs=0.5)  # the silences do not count as speech
    assert active.any() and np.array_equal(add_noise(clean, snr, color, seed=3), noisy)
    assert not np.array_equal(add_noise(clean, snr, color, seed=4), noisy)


def test_noise_colours_have_their_slopes() -> None:
    rng = np.random.default_rng(0)
    power = {}
    for color in ("white", "pink", "brown"):
        spectrum = np.abs(np.fft.rfft(colored_noise(2**16, color, rng))) ** 2
        power[color] = spectrum[100:1000].mean() / spectrum[10000:20000].mean()  # low band / high band
    assert 0.8 < power["white"] < 1.25
    assert 10 < power["pink"] < 40  # 1/f over ~15x in frequency
    assert power["brown"] > 100


def test_silence_cannot_be_given_an_snr() -> None:
    with pytest.raises(ValueError, match="silent"):
        add_noise(np.zeros(16000, dtype=np.float32), 10, "white", 0)
    assert speech_power(np.zeros(100, dtype=np.float32)) == 0.0


def test_plan_depends_on_ids_and_seed_only() -> None:
    config = AugmentConfig(copies=2, seed=0)
    plans = {(utt, copy): plan_copy(config, utt, copy) for utt in ("a", "b", "c", "d") for copy in (1, 2)}
    assert plans == {key: plan_copy(AugmentConfig(copies=2, seed=0), *key) for key in plans}
    assert plans != {key: plan_copy(AugmentConfig(copies=2, seed=1), *key) for key in plans}
    assert len({spec.noise_seed for spec in plans.values()}) == len(plans)
    no_noise = AugmentConfig(snr_db=(), reverb_prob=0.2)
    assert all(plan_copy(no_noise, f"u{i}", 1).reverberance is not None for i in range(20))


@pytest.mark.parametrize(("raw", "message"), [
    ({"copies": 0}, "copies"),
    ({"noise_colors": ["violet"]}, "violet"),
    ({"reverb_prob": 2}, "reverb_prob"),
    ({"reverberance": [150]}, "reverberance"),
    ({"snr_db": [], "reverb_prob": 0}, "nothing to do"),
    ({"snr": [10]}, "unknown key"),
])
def test_bad_configs_name_the_file(tmp_path: Path, raw: dict, message: str) -> None:
    path = tmp_path / "aug.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in raw.items()))
    with pytest.raises(UserInputError, match=rf"{path}.*{message}|{message}.*"):
        AugmentConfig.from_yaml(path)
    assert str(path) in _error(path)


def _error(path: Path) -> str:
    try:
        AugmentConfig.from_yaml(path)
    except UserInputError as err:
        return str(err)
    return ""


def _source(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    wav = tmp_path / "a.wav"
    sf.write(wav, _speech(), 16000)
    src = tmp_path / "src"
    utts = {"it_m1-u1": str(wav), "it_m1-u2": f"sox {str(wav)!r} -t wav - |"}
    write_data_dir(src, wav_scp=utts, text={"it_m1-u1": "uno", "it_m1-u2": "due"},
                   utt2spk={u: "it_m1" for u in utts}, utt2lang={u: "it" for u in utts},
                   utt2dur={u: "1.500" for u in utts}, spk2gender={"it_m1": "m"})
    return src, utts, wav


def _augment(tmp_path: Path, config: str) -> tuple[Path, dict[str, str], np.ndarray]:
    src, utts, wav = _source(tmp_path)
    conf = tmp_path / "aug.yaml"
    conf.write_text(config)
    out = tmp_path / "aug"
    assert augment_data_dir.main(["--in_dir", str(src), "--out_dir", str(out), "--augment_config", str(conf)]) == 0
    assert validate_data_dir(out) == []
    text, utt2spk, scp = (read_map(out / name) for name in ("text", "utt2spk", "wav.scp"))
    assert sorted(text) == sorted([*utts, *(f"aug{k}-{u}" for k in (1, 2) for u in utts)])
    assert text["aug2-it_m1-u2"] == "due" and utt2spk["aug1-it_m1-u1"] == "aug1-it_m1"
    assert read_map(out / "utt2lang")["aug1-it_m1-u2"] == "it"
    assert read_map(out / "spk2gender")["aug2-it_m1"] == "m"
    assert scp["it_m1-u1"] == str(wav)  # the original, untouched
    described = read_map(out / "utt2aug")
    assert set(described) == {f"aug{k}-{u}" for k in (1, 2) for u in utts}
    return out, described, read_audio(str(wav), 16000, "clean")


def test_noise_copies_decode_at_their_snr(tmp_path: Path) -> None:
    out, described, clean = _augment(tmp_path, "copies: 2\nsnr_db: [10]\nnoise_colors: [pink]\nreverb_prob: 0\n")
    scp = read_map(out / "wav.scp")
    for utt, what in described.items():
        assert what == "pink10dB"
        samples = read_audio(scp[utt], 16000, utt)
        assert len(samples) == len(clean)
        np.testing.assert_array_equal(read_audio(scp[utt], 16000, utt), samples)  # the same on every decode
        snr = 10 * np.log10(np.mean(clean[4000:20000] ** 2) / np.mean((samples - clean)[4000:20000] ** 2))
        assert snr == pytest.approx(10, abs=0.7)


def test_reverberant_copies_ring_into_the_silence(tmp_path: Path) -> None:
    out, described, clean = _augment(tmp_path, "copies: 2\nsnr_db: []\nreverb_prob: 1\nreverberance: [70]\n")
    scp = read_map(out / "wav.scp")
    tail = slice(20000, 20000 + 1600)  # the 0.1 s after the tone burst ends: silent in the original
    assert not clean[tail].any()
    for utt, what in described.items():
        assert what == "reverb70"
        samples = read_audio(scp[utt], 16000, utt)
        assert len(samples) == len(clean)
        assert 10 * np.log10(np.mean(samples[tail] ** 2) / np.mean(clean[4000:20000] ** 2)) > -40


def test_add_noise_filter_refuses_non_audio() -> None:
    result = subprocess.run([sys.executable, "-m", "espnet_adapters.bin.add_noise", "--snr_db", "10", "--color",
                             "white", "--seed", "1"], input=b"not a wav", capture_output=True, check=False)
    assert result.returncode == 1 and result.stdout == b""
    assert "stdin: not audio" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_copy_spec_describes_itself() -> None:
    assert CopySpec(10.0, "pink", 50.0, 1).describe() == "reverb50+pink10dB"
    assert CopySpec(None, None, 30.0, 1).describe() == "reverb30"


def test_recipe_stage_2_speed_then_noise_and_reverb(tmp_path: Path) -> None:
    """./run.sh --speed_perturb_factors --augment_config: data/hi_train_sp_aug (3 x 3 copies), formatted
    by stage 3 like any set; another config re-makes only the augmented set and its formatting."""
    recipe = new_recipe(tmp_path / "adapt1", "hi")
    conf = tmp_path / "aug.yaml"
    conf.write_text("copies: 2\nsnr_db: [10, 20]\nreverb_prob: 0.5\n")
    args = ["./run.sh", "--train_utts", "3", "--dev_utts", "1", "--test_utts", "1", "--test_sets", "test",
            "--eval_langs", "", "--speed_perturb_factors", "0.9 1.0", "--augment_config", str(conf), "--stop_stage", "3"]

    def run() -> str:
        result = subprocess.run(args, cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=600,
                                check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    out = run()
    assert "data/hi_train_sp_aug: 18 utterances (" in out
    assert len(read_map(recipe / "dump/raw/hi_train_sp_aug/text")) == 18
    described = read_map(recipe / "data/hi_train_sp_aug/utt2aug")
    assert len(described) == 12 and any(u.startswith("aug1-sp0.9-") for u in described)
    assert not (recipe / "dump/raw/hi_train").exists()  # the training set is the augmented one
    stamp = (recipe / "dump/raw/hi_dev/.done").stat().st_mtime_ns
    conf.write_text("copies: 2\nsnr_db: [5]\nreverb_prob: 0\n")
    out = run()
    assert "hi_train_sp: up to date" in out and "data/hi_train_sp_aug: 18 utterances (0 reverberated, 12 with noise" in out
    assert set(read_map(recipe / "data/hi_train_sp_aug/utt2aug").values()) <= {"white5dB", "pink5dB", "brown5dB"}
    assert (recipe / "dump/raw/hi_dev/.done").stat().st_mtime_ns == stamp
    assert "hi_train_sp_aug: up to date" not in out and "hi_dev: up to date" in out
