"""MLS preparation on a tiny native-layout release (flac and opus), end to end.

Runs the real entry point (``prepare_corpus.main``) on a fixture shaped like the
download, then checks what recipes rely on: valid Kaldi dirs whose audio decodes,
the speakers and genders of ``metainfo.txt``, the limited-supervision subsets, and
clear errors or counted skips for broken input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures import mls as fixture

from espnet_adapters.bin.prepare_corpus import main
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, validate_data_dir

LANG = "it"
RELEASE = "mls_italian"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One flac and one opus release, built once for the module (never modified by tests)."""
    return {
        "flac": fixture.build(tmp_path_factory.mktemp("mls_flac"), LANG),
        "opus": fixture.build(tmp_path_factory.mktemp("mls_opus"), LANG, opus=True),
    }


@pytest.fixture
def flac_copy(corpus: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the flac release, for tests that break it."""
    shutil.copytree(corpus["flac"], tmp_path / "corpus")
    return tmp_path / "corpus"


def prepare(root: Path, data_dir: Path, *extra: str) -> int:
    return main(["--corpus", "mls", "--root", str(root), "--lang", LANG, "--data_dir", str(data_dir), *extra])


def our_utt(native: str) -> str:
    spk, book, seg = native.split("_")
    return f"mls-{spk}-{book}-{seg}"


def native_transcripts(root: Path, release: str, split: str) -> dict[str, str]:
    lines = (root / release / split / "transcripts.txt").read_text(encoding="utf-8").splitlines()
    return {our_utt(key): text for key, text in (line.split("\t") for line in lines)}


def check_split(out: Path, expected_text: dict[str, str], speakers: list[tuple], suffix: str) -> None:
    """Everything a recipe reads from one prepared split."""
    assert validate_data_dir(out, check_audio=True) == []
    assert read_map(out / "text") == expected_text
    utt2spk = read_map(out / "utt2spk")
    assert set(utt2spk.values()) == {f"mls-{spk}" for spk, *_ in speakers}
    assert all(utt.startswith(f"{spk}-") for utt, spk in utt2spk.items())
    assert read_map(out / "spk2gender") == {f"mls-{spk}": gender.lower() for spk, _, gender, *_ in speakers}
    assert set(read_map(out / "utt2lang").values()) == {LANG}
    assert set(read_map(out / "utt2category").values()) == {"mls"}
    for number, (utt, entry) in enumerate(read_map(out / "wav.scp").items(), 1):
        assert Path(entry).is_absolute() and entry.endswith(suffix), entry
        audio = read_audio(entry, 16000, f"{out}/wav.scp:{number}")
        assert audio.size > 0 and abs(audio.size / 16000 - float(read_map(out / "utt2dur")[utt])) < 0.05
    stats = json.loads((out / "stats.json").read_text())
    assert stats["utterances"] == len(expected_text) and stats["speakers"] == len(speakers)
    assert stats["hours"] > 0


@pytest.mark.parametrize("release", ["flac", "opus"])
def test_release_prepared(corpus: dict[str, Path], tmp_path: Path, release: str) -> None:
    root, folder = corpus[release], RELEASE if release == "flac" else f"{RELEASE}_opus"
    assert prepare(root, tmp_path / "data") == 0
    for split, speakers in fixture.SPEAKERS.items():
        expected = native_transcripts(root, folder, split)
        assert len(expected) == len(speakers) * fixture.UTTS_PER_SPEAKER
        check_split(tmp_path / "data" / f"mls_{LANG}_{split}", expected, speakers, f".{release}")


def test_flac_preferred_when_both_releases_present(corpus: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "both"
    root.mkdir()
    (root / RELEASE).symlink_to(corpus["flac"] / RELEASE)
    (root / f"{RELEASE}_opus").symlink_to(corpus["opus"] / f"{RELEASE}_opus")
    assert prepare(root, tmp_path / "data", "--splits", "dev") == 0
    entries = read_map(tmp_path / "data" / f"mls_{LANG}_dev" / "wav.scp").values()
    assert entries and all(entry.endswith(".flac") for entry in entries)


@pytest.mark.parametrize("limited", ["1h", "9h"])
def test_limited_supervision_selects_exactly_the_handles(corpus: dict[str, Path], tmp_path: Path, limited: str) -> None:
    assert prepare(corpus["flac"], tmp_path / "data", "--splits", "train", "--mls_limited", limited) == 0
    handles = {our_utt(h) for utts in fixture.LIMITED[limited].values() for h in utts}
    assert set(read_map(tmp_path / "data" / f"mls_{LANG}_train" / "text")) == handles


def test_missing_handles_file_is_a_clear_error(
    flac_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handles = flac_copy / RELEASE / "train" / "limited_supervision" / "9hr" / "handles.txt"
    handles.unlink()
    assert prepare(flac_copy, tmp_path / "data", "--mls_limited", "9h") == 1
    assert f"{handles}: not found" in caplog.text
    assert not (tmp_path / "data").exists()


def test_missing_release_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert prepare(tmp_path / "empty", tmp_path / "data") == 1
    assert f"neither {RELEASE} nor {RELEASE}_opus found" in caplog.text


def test_bad_lines_are_skipped_and_named(flac_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    transcripts = flac_copy / RELEASE / "train" / "transcripts.txt"
    lines = transcripts.read_text(encoding="utf-8").splitlines()
    emptied = lines[1].split("\t")[0]
    lines[1] = f"{emptied}\t  "
    lines += ["1001_501_000099 no tab here", "1001-501\tmalformed id", "1001_501_000042\tno audio for this one"]
    transcripts.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert prepare(flac_copy, tmp_path / "data", "--splits", "train") == 0
    kept = set(read_map(tmp_path / "data" / f"mls_{LANG}_train" / "text"))
    assert len(kept) == len(fixture.SPEAKERS["train"]) * fixture.UTTS_PER_SPEAKER - 1
    assert our_utt(emptied) not in kept
    for line, reason in [(2, "empty transcript"), (7, "not 'id<TAB>text'"), (8, "malformed utterance id"),
                         (9, "missing audio")]:
        assert f"skipped {transcripts}:{line}: {reason}" in caplog.text
