"""IndicVoices preparation from its native layout (long wavs + json segment lists).

The fixture (``fixtures/indicvoices.py``) holds train recordings of two speakers,
valid recordings of four, and every kind of segment or file the preparer must
skip.  Prepared dirs must validate with their audio, their segments must cut
speech out of the long recordings exactly as the format stage reads them, and
dev/test/train must share no speaker.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from fixtures import indicvoices as fx

from espnet_adapters.bin import format_wav_scp, prepare_corpus
from espnet_adapters.data.corpora import PrepOptions, indicvoices
from espnet_adapters.data.corpora.common import SkipLog
from espnet_adapters.data.kaldi import read_map, validate_data_dir
from espnet_adapters.utils.cli import UserInputError

SPLITS = ("train", "dev", "test")


def _prepare(root: Path, data_dir: Path, *extra: str) -> int:
    return prepare_corpus.main(["--corpus", "indicvoices", "--root", str(root), "--lang", "hi",
                                "--data_dir", str(data_dir), *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fx.build(tmp_path_factory.mktemp("indicvoices"), "hi")


@pytest.fixture(scope="module")
def prepared(corpus: Path) -> Path:
    data = corpus.parent / "data"
    assert _prepare(corpus, data) == 0
    return data


def _dir(data: Path, split: str) -> Path:
    return data / f"indicvoices_hi_{split}"


def _speakers(data: Path, split: str) -> set[str]:
    return set(read_map(_dir(data, split) / "utt2spk").values())


def test_prepared_dirs_validate_with_audio(prepared: Path) -> None:
    for split in SPLITS:
        directory = _dir(prepared, split)
        assert validate_data_dir(directory, check_audio=True) == []
        assert set(read_map(directory / "utt2category").values()) == {"indicvoices"}
        assert set(read_map(directory / "utt2lang").values()) == {"hi"}
        stats = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
        assert stats["utterances"] == len(read_map(directory / "utt2spk"))
    assert read_map(_dir(prepared, "train") / "spk2gender") == {"iv-1100001": "f", "iv-1100002": "m"}


def test_splits_share_no_speaker_and_dev_test_halve_valid(prepared: Path) -> None:
    train, dev, test = (_speakers(prepared, split) for split in SPLITS)
    assert train == {f"iv-{spk}" for spk in fx.TRAIN_SPEAKERS}
    assert len(dev) == len(test) == 2
    assert dev | test == {f"iv-{spk}" for spk in fx.VALID_SPEAKERS}
    assert len(read_map(_dir(prepared, "train") / "text")) == 3 * len(fx.TRAIN_SPEAKERS)


def test_dev_test_split_is_deterministic(corpus: Path, prepared: Path, tmp_path: Path) -> None:
    assert _prepare(corpus, tmp_path, "--splits", "dev", "test") == 0
    for split in ("dev", "test"):
        assert (_dir(tmp_path, split) / "text").read_bytes() == (_dir(prepared, split) / "text").read_bytes()


def test_segments_cut_speech_from_the_long_recordings(prepared: Path, tmp_path: Path) -> None:
    for split in SPLITS:
        directory = _dir(prepared, split)
        out = tmp_path / split
        assert format_wav_scp.main(["--in_dir", str(directory), "--keys", str(directory / "text"),
                                    "--out_dir", str(out)]) == 0
        assert read_map(out / "skipped", allow_empty_value=True) == {}
        durations = {utt: float(d) for utt, d in read_map(out / "utt2dur").items()}
        for utt, segment in read_map(directory / "segments").items():
            _, start, end = segment.split()
            assert durations[utt] == pytest.approx(float(end) - float(start), abs=2e-3)
    # Speech, not the 1e-3 noise between sentences: the boundaries are the sentences'.
    for utt, (rate, audio) in kaldiio.load_scp(str(tmp_path / "train" / "wav.scp")).items():
        assert rate == fx.FS
        assert np.sqrt(np.mean(np.square(audio, dtype=float))) > 0.01, f"{utt} is not speech"


def test_verbatim_text_keeps_the_false_start_without_tags(corpus: Path, prepared: Path, tmp_path: Path) -> None:
    assert _prepare(corpus, tmp_path, "--splits", "train", "--iv_text", "verbatim") == 0
    verbatim = read_map(_dir(tmp_path, "train") / "text")
    normalized = read_map(_dir(prepared, "train") / "text")
    assert verbatim.keys() == normalized.keys()
    for utt, text in normalized.items():
        assert verbatim[utt] == f"{text.split()[0]} {text}"
        assert not set("[]()<>") & set(verbatim[utt])


def test_bad_files_and_segments_are_counted_skips_naming_the_file(corpus: Path, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert _prepare(corpus, tmp_path, "--splits", "train") == 0
    assert f"{fx.BROKEN_JSON}: unusable json (cannot parse" in caplog.text
    assert f"{fx.NO_SEGMENTS_JSON}: unusable json (no verbatim/normalized segment lists)" in caplog.text
    assert "5a5a-long_0.json: segment 1: segment longer than 30 s (31.00 s)" in caplog.text
    summary = ", ".join(f"{n} ({reason})" for reason, n in sorted(fx.TRAIN_SKIPS.items()))
    assert f"indicvoices hi train: 6 utterances kept, skipped {summary}" in caplog.text


def test_a_test_folder_is_used_as_test_and_valid_becomes_dev(corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(corpus / "Hindi", root / "Hindi")
    valid, test = root / "Hindi" / fx.VERSION / "valid", root / "Hindi" / fx.VERSION / "test"
    test.mkdir()
    moved = sorted(fx.VALID_SPEAKERS)[:1]
    for path in valid.glob(f"*-{moved[0]}_0.*"):
        path.rename(test / path.name)
    assert _prepare(root, tmp_path / "data") == 0
    assert _speakers(tmp_path / "data", "test") == {f"iv-{moved[0]}"}
    assert len(_speakers(tmp_path / "data", "dev")) == 3


def test_malformed_segments_are_counted_skips(tmp_path: Path) -> None:
    split_dir = tmp_path / "train"
    split_dir.mkdir()
    sf.write(split_dir / "x_0.wav", np.zeros(fx.FS * 2, dtype=np.float32), fx.FS)
    good = {"start": 0.5, "end": 1.5, "text": "ठीक है", "speaker_id": 0}
    segments = [good, {"start": 0.1, "text": "no end"}, {**good, "text": None}, {**good, "start": float("nan")}]
    meta = {"speaker_id": "42", "gender": "Other", "verbatim": segments, "normalized": segments}
    (split_dir / "x_0.json").write_text(json.dumps(meta), encoding="utf-8")
    skips = SkipLog()
    utts = indicvoices.read_split_dir(split_dir, "hi", skips, PrepOptions())
    assert [(u.utt_id, u.segment, u.text, u.gender) for u in utts] == [("iv-42-x_0-0001", (0.5, 1.5), "ठीक है", None)]
    assert skips.reasons == {"malformed segment": 3}


def test_remove_tags() -> None:
    assert indicvoices.remove_tags("[noise] नमस्ते (laugh) <breath>  जी ]") == "नमस्ते जी"
    assert indicvoices.remove_tags("[music]") == ""


def test_newest_version_is_used_and_a_missing_language_is_clear(tmp_path: Path) -> None:
    for version in ("v2", "v10", "v9"):
        (tmp_path / "Telugu" / version).mkdir(parents=True)
    assert indicvoices.version_dir(tmp_path, "te").name == "v10"
    with pytest.raises(UserInputError, match=r"Punjabi: no <version>/ folder"):
        indicvoices.prepare(tmp_path, "pa", "train", SkipLog(), PrepOptions())
    with pytest.raises(UserInputError, match="corpus indicvoices has no language 'xx'"):
        indicvoices.version_dir(tmp_path, "xx")
