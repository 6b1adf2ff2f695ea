"""Common Voice preparation on native-layout releases (v1 and v17 headers): output, skips, errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from fixtures import commonvoice

from espnet_adapters.bin.prepare_corpus import main
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, validate_data_dir

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def release_v17(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Punjabi (locale folder ``pa-IN``) with the v17 header, built once; tests copy it."""
    return commonvoice.build(tmp_path_factory.mktemp("cv17"), "pa", version="v17")


@pytest.fixture()
def release(release_v17: Path, tmp_path: Path) -> Path:
    """A private copy of the v17 release that a test may damage."""
    return Path(shutil.copytree(release_v17, tmp_path / release_v17.name))


def prepare(root: Path, data: Path, lang: str = "pa", *extra: str) -> int:
    return main(["--corpus", "commonvoice", "--root", str(root), "--lang", lang, "--data_dir", str(data), *extra])


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def tsv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    names = header.split("\t")
    return names, [dict(zip(names, line.split("\t"))) for line in lines]


def rewrite_row(path: Path, index: int, **changes: str) -> None:
    """Change fields of data row ``index`` (0-based, so on line ``index + 2``) of a TSV."""
    names, rows = tsv_rows(path)
    rows[index].update(changes)
    commonvoice.write_tsv(path, names, ["\t".join(row[n] for n in names) for row in rows])


def check_split(out: Path, lang: str, utterances: int, speakers: int) -> dict[str, str]:
    """Everything a prepared split must satisfy; returns its ``text``."""
    assert validate_data_dir(out, check_audio=True) == []
    wav_scp = read_map(out / "wav.scp")
    assert len(wav_scp) == utterances
    for line, (utt, entry) in enumerate(wav_scp.items(), 1):
        assert Path(entry).is_absolute() and entry.endswith(".mp3")
        assert read_audio(entry, 16000, f"{out}/wav.scp:{line}").size > 0, utt
    utt2spk = read_map(out / "utt2spk")
    assert len(set(utt2spk.values())) == speakers
    assert all(spk.startswith("cv-") and utt.startswith(spk + "-") for utt, spk in utt2spk.items())
    assert set(read_map(out / "utt2lang").values()) == {lang}
    assert set(read_map(out / "utt2category").values()) == {"commonvoice"}
    assert sorted(read_map(out / "spk2gender").values()) == sorted("mf" * (speakers // 2))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["utterances"] == utterances and stats["speakers"] == speakers and stats["hours"] > 0
    return read_map(out / "text")


@pytest.mark.parametrize("version, lang", [("v17", "pa"), ("v1", "hi")])
def test_release_becomes_valid_data_dirs(version: str, lang: str, release_v17: Path, tmp_path: Path) -> None:
    root = release_v17 if version == "v17" else commonvoice.build(tmp_path, lang, version=version)
    assert prepare(root, tmp_path / "data", lang) == 0
    speakers = {}
    for split in SPLITS:
        out = tmp_path / "data" / f"commonvoice_{lang}_{split}"
        text = check_split(out, lang, utterances=6, speakers=2)
        _, rows = tsv_rows(root / commonvoice.LOCALES[lang] / f"{split}.tsv")
        assert sorted(text.values()) == sorted(row["sentence"] for row in rows)
        speakers[split] = set(read_map(out / "utt2spk").values())
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test"]


def test_missing_locale_folder_is_named(release: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    shutil.move(release / "pa-IN", release / "pa")  # our code instead of Common Voice's locale
    assert prepare(release, tmp_path / "data") == 1
    errors = messages(caplog, logging.ERROR)
    assert any("COMMONVOICE=" in e and "no folder pa-IN/" in e for e in errors), errors


@pytest.mark.parametrize("damage, reason", [
    ("missing clip", "missing audio"),
    ("empty sentence", "empty transcript"),
    ("garbage mp3", "unreadable audio"),
    ("field dropped", "wrong number of fields"),
])
def test_bad_row_is_a_counted_skip(damage: str, reason: str, release: Path, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    tsv = release / "pa-IN" / "train.tsv"
    _, rows = tsv_rows(tsv)
    clip = release / "pa-IN" / "clips" / rows[1]["path"]
    line = 3
    if damage == "missing clip":
        clip.unlink()
    elif damage == "empty sentence":
        rewrite_row(tsv, 1, sentence="  ")
    elif damage == "garbage mp3":
        clip.write_bytes(clip.read_bytes()[:40] + b"\0" * 100)
    else:
        lines = tsv.read_text(encoding="utf-8").splitlines()
        lines[line - 1] = lines[line - 1].rsplit("\t", 1)[0]
        tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert prepare(release, tmp_path / "data") == 0
    warnings = messages(caplog, logging.WARNING)
    assert any(f"{tsv}:{line}" in w and reason in w for w in warnings), warnings
    assert len(read_map(tmp_path / "data" / "commonvoice_pa_train" / "text")) == 5
    assert len(read_map(tmp_path / "data" / "commonvoice_pa_dev" / "text")) == 6


def test_quotes_in_sentences_are_literal(release: Path, tmp_path: Path) -> None:
    tsv = release / "pa-IN" / "dev.tsv"
    rewrite_row(tsv, 0, sentence='He said "stop')
    rewrite_row(tsv, 1, sentence='"Quoted" twice')
    assert prepare(release, tmp_path / "data") == 0
    texts = set(read_map(tmp_path / "data" / "commonvoice_pa_dev" / "text").values())
    assert {'He said "stop', '"Quoted" twice'} <= texts


def test_header_without_path_column_is_an_error(release: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    tsv = release / "pa-IN" / "test.tsv"
    names, _ = tsv_rows(tsv)
    commonvoice.write_tsv(tsv, ["filename" if n == "path" else n for n in names],
                          tsv.read_text(encoding="utf-8").splitlines()[1:])
    assert prepare(release, tmp_path / "data") == 1
    errors = messages(caplog, logging.ERROR)
    assert any(str(tsv) in e and "path" in e for e in errors), errors
    assert not (tmp_path / "data").exists()


def test_split_without_usable_row_is_an_error(release: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    tsv = release / "pa-IN" / "dev.tsv"
    for index in range(6):
        rewrite_row(tsv, index, sentence="")
    assert prepare(release, tmp_path / "data") == 1
    errors = messages(caplog, logging.ERROR)
    assert any("dev" in e and "no usable utterance" in e and "6 (empty transcript)" in e for e in errors), errors
    assert not (tmp_path / "data").exists()


def test_min_votes_filters_rows(release: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The fixture's three clips per speaker have net votes 2, 3 and 4.
    assert prepare(release, tmp_path / "data", "pa", "--cv_min_votes", "3") == 0
    for split in SPLITS:
        assert len(read_map(tmp_path / "data" / f"commonvoice_pa_{split}" / "text")) == 4
    assert any("net votes below 3" in r.getMessage() for r in caplog.records)


def test_clip_listed_twice_is_kept_once(release: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tsv = release / "pa-IN" / "test.tsv"
    lines = tsv.read_text(encoding="utf-8").splitlines()
    tsv.write_text("\n".join([*lines, lines[2]]) + "\n", encoding="utf-8")
    assert prepare(release, tmp_path / "data") == 0
    assert len(read_map(tmp_path / "data" / "commonvoice_pa_test" / "text")) == 6
    assert any(f"{tsv}:8: duplicate path" in w and "first on line 3" in w for w in messages(caplog, logging.WARNING))
