"""FLEURS preparation on the native layout: output, per-recording speakers, skips, archives, errors."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from fixtures import fleurs

from espnet_adapters.bin.prepare_corpus import main
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, validate_data_dir

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def corpus_hi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hindi (``hi_in``), extracted audio, built once; tests copy it."""
    return fleurs.build(tmp_path_factory.mktemp("fleurs"), "hi")


@pytest.fixture()
def corpus(corpus_hi: Path, tmp_path: Path) -> Path:
    """A private copy that a test may damage."""
    return Path(shutil.copytree(corpus_hi, tmp_path / "fleurs"))


def prepare(root: Path, data: Path, lang: str = "hi") -> int:
    return main(["--corpus", "fleurs", "--root", str(root), "--lang", lang, "--data_dir", str(data)])


def tsv_rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def write_rows(path: Path, rows: list[list[str]]) -> None:
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_corpus_becomes_valid_data_dirs(corpus_hi: Path, tmp_path: Path) -> None:
    assert prepare(corpus_hi, tmp_path / "data") == 0
    speakers = {}
    for split in SPLITS:
        out = tmp_path / "data" / f"fleurs_hi_{split}"
        assert validate_data_dir(out, check_audio=True) == []
        wav_scp = read_map(out / "wav.scp")
        assert len(wav_scp) == 6
        for line, entry in enumerate(wav_scp.values(), 1):
            assert Path(entry).is_absolute() and f"/audio/{split}/" in entry
            assert read_audio(entry, 16000, f"{out}/wav.scp:{line}").size > 0
        rows = tsv_rows(corpus_hi / "hi_in" / f"{split}.tsv")
        assert sorted(read_map(out / "text").values()) == sorted(row[2] for row in rows)  # raw_transcription
        # One pseudo-speaker per recording: 2 readers x 3 sentences = 6, with their genders.
        utt2spk = read_map(out / "utt2spk")
        assert len(set(utt2spk.values())) == 6
        assert all(spk.startswith(f"fl-{split}_") and utt.startswith(spk + "-") for utt, spk in utt2spk.items())
        assert sorted(read_map(out / "spk2gender").values()) == sorted("mf" * 3)
        assert set(read_map(out / "utt2lang").values()) == {"hi"}
        assert set(read_map(out / "utt2category").values()) == {"fleurs"}
        stats = json.loads((out / "stats.json").read_text())
        assert stats["utterances"] == 6 and stats["speakers"] == 6 and stats["hours"] > 0
        speakers[split] = set(utt2spk.values())
    assert not speakers["train"] & speakers["dev"] and not speakers["dev"] & speakers["test"]


def test_sentence_ids_shared_across_splits_are_no_speaker_leak(corpus: Path, tmp_path: Path) -> None:
    """A sentence id says nothing about the speaker: reusing train's ids in dev must pass the leak check."""
    locale = corpus / "hi_in"
    train_ids = [row[0] for row in tsv_rows(locale / "train.tsv")]
    dev = tsv_rows(locale / "dev.tsv")
    write_rows(locale / "dev.tsv", [[sentence_id, *row[1:]] for sentence_id, row in zip(train_ids, dev)])
    assert prepare(corpus, tmp_path / "data") == 0
    assert {utt.rsplit("-", 1)[1] for utt in read_map(tmp_path / "data" / "fleurs_hi_dev" / "text")} == set(train_ids)


@pytest.mark.parametrize("damage, reason", [
    ("missing clip", "missing audio"),
    ("garbage wav", "unreadable audio"),
    ("empty transcription", "empty transcript"),
    ("column dropped", "wrong number of fields"),
    ("num_samples not a number", "num_samples is not a number"),
])
def test_bad_row_is_a_counted_skip(damage: str, reason: str, corpus: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    tsv = corpus / "hi_in" / "test.tsv"
    rows = tsv_rows(tsv)
    clip = corpus / "hi_in" / "audio" / "test" / rows[1][1]
    if damage == "missing clip":
        clip.unlink()
    elif damage == "garbage wav":
        clip.write_bytes(b"RIFF\0\0\0\0WAVEjunk" * 10)
    elif damage == "empty transcription":
        rows[1][2] = " "
    elif damage == "column dropped":
        del rows[1][4]
    else:
        rows[1][5] = "n/a"
    write_rows(tsv, rows)
    with caplog.at_level(logging.WARNING):
        assert prepare(corpus, tmp_path / "data") == 0
    assert any(f"{tsv}:2" in w and reason in w for w in messages(caplog, logging.WARNING)), caplog.text
    assert len(read_map(tmp_path / "data" / "fleurs_hi_test" / "text")) == 5
    assert len(read_map(tmp_path / "data" / "fleurs_hi_train" / "text")) == 6


def test_unextracted_archive_says_how_to_extract(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = fleurs.build(tmp_path, "te", extracted=False)
    for _ in SPLITS:  # one archive per split: follow the advice each time
        caplog.clear()
        assert prepare(root, tmp_path / "data", "te") == 1
        assert not (tmp_path / "data").exists()
        error = next(e for e in messages(caplog, logging.ERROR) if "tar.gz: not extracted; run: " in e)
        subprocess.run(error.split("run: ", 1)[1], shell=True, check=True)
    assert prepare(root, tmp_path / "data", "te") == 0
    assert len(read_map(tmp_path / "data" / "fleurs_te_dev" / "text")) == 6


def test_split_without_usable_row_is_an_error(corpus: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    shutil.rmtree(corpus / "hi_in" / "audio" / "dev")
    (corpus / "hi_in" / "audio" / "dev").mkdir()
    assert prepare(corpus, tmp_path / "data") == 1
    assert any("no usable utterance" in e and "6 (missing audio)" in e for e in messages(caplog, logging.ERROR))
    assert not (tmp_path / "data").exists()


def test_unknown_language_and_wrong_root_are_clear_errors(corpus: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    assert prepare(corpus, tmp_path / "data", "xx") == 1
    assert prepare(corpus / "hi_in", tmp_path / "data") == 1
    errors = messages(caplog, logging.ERROR)
    assert any("no language 'xx'" in e for e in errors), errors
    assert any("FLEURS=" in e and "no folder hi_in/" in e for e in errors), errors
