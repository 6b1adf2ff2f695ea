"""OWSM S2T data dirs: task-token text, <na> prompts, CTC text; language token errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from espnet_adapters.bin import owsm_fit_keys, prepare_s2t_data
from espnet_adapters.data.kaldi import read_map, write_data_dir
from espnet_adapters.owsm.data import lang_token, make_s2t_dir
from espnet_adapters.utils.cli import UserInputError


def _kaldi_dir(path: Path, langs: dict[str, str]) -> Path:
    utts = sorted(langs)
    write_data_dir(
        path,
        wav_scp={u: f"/audio/{u}.wav" for u in utts},
        text={u: f"words of {u}" for u in utts},
        utt2spk={u: u.split("-")[0] for u in utts},
        utt2lang=langs,
        utt2dur={u: 1.5 for u in utts},
    )
    return path


def test_s2t_dir_has_task_tokens_prompts_and_ctc_text(tmp_path: Path) -> None:
    src = _kaldi_dir(tmp_path / "src", {"hi_m1-u1": "hi", "it_f1-u2": "it", "pa_m2-u3": "pa", "te_f2-u4": "te"})
    assert make_s2t_dir(src, tmp_path / "s2t") == 4
    text = read_map(tmp_path / "s2t" / "text")
    assert text["hi_m1-u1"] == "<hin><asr><notimestamps> words of hi_m1-u1"
    assert [v.split(">")[0] for v in text.values()] == ["<hin", "<ita", "<pan", "<tel"]
    assert set(read_map(tmp_path / "s2t" / "text.prev").values()) == {"<na>"}
    assert read_map(tmp_path / "s2t" / "text.ctc") == read_map(src / "text")
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2lang", "utt2dur"):
        assert (tmp_path / "s2t" / name).read_bytes() == (src / name).read_bytes()


def test_language_without_iso639_3_code_is_an_error_naming_it(tmp_path: Path, caplog) -> None:
    assert lang_token("ita") == "<ita>"  # ISO 639-3 codes pass through
    with pytest.raises(UserInputError, match="'xx' has no ISO 639-3 code"):
        lang_token("xx")
    src = _kaldi_dir(tmp_path / "src", {"xx_m1-u1": "xx"})
    assert prepare_s2t_data.main([str(src), str(tmp_path / "s2t")]) == 1
    assert "'xx' has no ISO 639-3 code" in caplog.text
    assert not (tmp_path / "s2t").exists()


def test_lang_option_is_checked_against_utt2lang(tmp_path: Path) -> None:
    src = _kaldi_dir(tmp_path / "src", {"hi_m1-u1": "hi"})
    with pytest.raises(UserInputError, match="expected only it"):
        make_s2t_dir(src, tmp_path / "s2t", "it")
    (src / "utt2lang").unlink()
    with pytest.raises(UserInputError, match="no utt2lang and no language"):
        make_s2t_dir(src, tmp_path / "s2t")
    assert prepare_s2t_data.main(["--lang", "hi", str(src), str(tmp_path / "s2t")]) == 0
    assert read_map(tmp_path / "s2t" / "text")["hi_m1-u1"].startswith("<hin><asr><notimestamps> ")


def test_fit_keys_leave_out_utterances_longer_than_the_model_window(tmp_path: Path, caplog) -> None:
    s2t = tmp_path / "s2t"
    s2t.mkdir()
    (s2t / "utt2dur").write_text("a 3.0\nb 10.0\nc 10.5\nd 12.25\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text("preprocessor: s2t\npreprocessor_conf:\n    speech_length: 10\n", encoding="utf-8")
    assert owsm_fit_keys.main([str(s2t), "--config", str(config), "--out", str(tmp_path / "keys")]) == 0
    assert read_map(tmp_path / "keys") == {"a": "3.0", "b": "10.0"}
    assert "2 of 4 utterances are longer than the model's 10 s window" in caplog.text
    assert "d, 12.25 s" in caplog.text
    # No window in the config: ESPnet's default, 30 s.
    config.write_text("preprocessor: s2t\n", encoding="utf-8")
    assert owsm_fit_keys.main([str(s2t), "--config", str(config), "--out", str(tmp_path / "keys")]) == 0
    assert len(read_map(tmp_path / "keys")) == 4


@pytest.mark.parametrize(
    ("utt2dur", "speech_length", "message"),
    [
        ("a 3.0\nb long\n", 10, "utt2dur:2: duration 'long' is not a number"),
        ("a 31.0\n", 10, "no utterance fits the model's 10 s window"),
        ("a 3.0\n", -1, "speech_length must be a positive number"),
    ],
)
def test_fit_keys_bad_input_is_a_clear_error(tmp_path: Path, caplog, utt2dur: str, speech_length: int, message: str) -> None:
    s2t = tmp_path / "s2t"
    s2t.mkdir()
    (s2t / "utt2dur").write_text(utt2dur, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"preprocessor_conf:\n    speech_length: {speech_length}\n", encoding="utf-8")
    assert owsm_fit_keys.main([str(s2t), "--config", str(config), "--out", str(tmp_path / "keys")]) != 0
    assert message in caplog.text
    assert not (tmp_path / "keys").exists()
