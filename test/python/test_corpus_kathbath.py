"""Kathbath preparation on a tiny native-layout language folder (m4a), end to end.

Runs the real entry point (``prepare_corpus.main``) on fixtures with and without
the ``audio/`` subfolder and checks the split mapping (test_unknown is our
speaker-independent test, test_known overlaps train on purpose), speakers and
genders from the file names, audio that decodes through ffmpeg, and counted,
named skips for broken rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures import kathbath as fixture

from espnet_adapters.bin.prepare_corpus import main
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.corpora.kathbath import NATIVE_SPLITS
from espnet_adapters.data.kaldi import read_map, validate_data_dir

LANG = "hi"
PER_SPLIT = len(fixture.SPEAKERS["train"]) * fixture.UTTS_PER_SPEAKER


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """The language folder with clips in ``audio/`` (True) and beside the transcript (False)."""
    return {
        sub: fixture.build(tmp_path_factory.mktemp("kathbath"), LANG, audio_subdir=sub) for sub in (True, False)
    }


@pytest.fixture
def corpus_copy(corpus: dict[bool, Path], tmp_path: Path) -> Path:
    """A private copy (clips in ``audio/``), for tests that break it."""
    shutil.copytree(corpus[True], tmp_path / "corpus")
    return tmp_path / "corpus"


def prepare(root: Path, data_dir: Path, *extra: str) -> int:
    return main(["--corpus", "kathbath", "--root", str(root), "--lang", LANG, "--data_dir", str(data_dir), *extra])


def transcript(root: Path, split: str) -> Path:
    return root / "hindi" / NATIVE_SPLITS[split] / fixture.TRANSCRIPT


def speakers_of(out: Path) -> set[str]:
    return set(read_map(out / "utt2spk").values())


def native_texts(root: Path, split: str) -> dict[str, str]:
    """Our utterance id -> text of a split's ``transcription_n2w.txt``."""
    texts = {}
    for line in transcript(root, split).read_text(encoding="utf-8").splitlines():
        name, text = line.split("\t")
        clip, speaker, _ = name.removesuffix(".m4a").split("-")
        texts[f"kb-{LANG}_{speaker}-{clip}"] = text
    return texts


def check_split(out: Path, root: Path, split: str) -> None:
    """Everything a recipe reads from one prepared split."""
    assert validate_data_dir(out, check_audio=True) == []
    speakers = fixture.SPEAKERS[NATIVE_SPLITS[split]]
    assert read_map(out / "text") == native_texts(root, split)
    assert speakers_of(out) == {f"kb-{LANG}_{spk}" for spk, *_ in speakers}
    assert read_map(out / "spk2gender") == {f"kb-{LANG}_{spk}": gender for spk, gender, *_ in speakers}
    assert set(read_map(out / "utt2lang").values()) == {LANG}
    assert set(read_map(out / "utt2category").values()) == {"kathbath"}
    utt2dur = read_map(out / "utt2dur")
    for number, (utt, entry) in enumerate(read_map(out / "wav.scp").items(), 1):
        assert Path(entry).is_absolute() and entry.endswith(".m4a"), entry
        audio = read_audio(entry, 16000, f"{out}/wav.scp:{number}")
        assert audio.size > 0 and abs(audio.size / 16000 - float(utt2dur[utt])) < 0.1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["utterances"] == PER_SPLIT and stats["speakers"] == len(speakers) and stats["hours"] > 0


@pytest.mark.parametrize("audio_subdir", [True, False], ids=["audio_subdir", "flat"])
def test_all_splits_prepared(corpus: dict[bool, Path], tmp_path: Path, audio_subdir: bool) -> None:
    root = corpus[audio_subdir]
    assert prepare(root, tmp_path / "data") == 0
    out = {split: tmp_path / "data" / f"kathbath_{LANG}_{split}" for split in NATIVE_SPLITS}
    for split, path in out.items():
        check_split(path, root, split)
    train = speakers_of(out["train"])
    assert speakers_of(out["test_known"]) == train
    assert not speakers_of(out["test"]) & train and not speakers_of(out["dev"]) & train


def test_bad_rows_are_skipped_and_named(corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = transcript(corpus_copy, "train")
    lines = path.read_text(encoding="utf-8").splitlines()
    clips = path.parent / "audio"
    (clips / lines[0].split("\t")[0]).unlink()  # line 1: its m4a is missing
    lines[1] = lines[1].split("\t")[0] + "\t "  # line 2: empty transcript
    (clips / lines[2].split("\t")[0]).write_bytes(b"not an m4a file at all" * 50)  # line 3: unreadable
    lines.append("speaker594_clip.m4a\tनाम गलत है")  # line 7: file name without id/speaker/gender
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert prepare(corpus_copy, tmp_path / "data", "--splits", "train", "test_known") == 0
    assert len(read_map(tmp_path / "data" / f"kathbath_{LANG}_train" / "text")) == PER_SPLIT - 3
    assert len(read_map(tmp_path / "data" / f"kathbath_{LANG}_test_known" / "text")) == PER_SPLIT
    for line, reason in [(1, "missing audio"), (2, "empty transcript"), (3, "unreadable audio"),
                         (7, "file name not <id>-<speaker>-<m|f>.m4a")]:
        assert f"skipped {path}:{line}: {reason}" in caplog.text


def test_nothing_usable_fails_without_writing(
    corpus_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for clip in (transcript(corpus_copy, "train").parent / "audio").iterdir():
        clip.write_bytes(b"garbage")
    assert prepare(corpus_copy, tmp_path / "data") == 1
    assert "kathbath hi train" in caplog.text and "no usable utterance" in caplog.text
    assert not (tmp_path / "data").exists()
