"""Tests for espnet_adapters.data.kaldi: Kaldi data-dir rules, fix, subset, atomic writes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from espnet_adapters.data import kaldi
from espnet_adapters.utils.cli import UserInputError

REPO = Path(__file__).resolve().parents[2]

# Hindi with a ZWJ (half form) and a ZWNJ, Punjabi, Telugu with a ZWNJ.
TEXT = {
    "hi01-0001": "क्‍ष नमस्ते दुनिया",
    "hi01-0002": "यह एक परी‌क्षण है।",
    "pa01-0001": "ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ ਜੀ",
    "te01-0001": "నమస్కారం క్‌ష ప్రపంచం",
}
UTT2SPK = {utt: utt.split("-")[0] for utt in TEXT}
WAV = {
    "hi01-0001": "/corpus/hi/0001.wav",
    "hi01-0002": "sox /corpus/hi/0002.flac -t wav -r 16000 -b 16 - |",
    "pa01-0001": "ffmpeg -i /corpus/pa/0001.mp3 -f wav -ar 16000 -ac 1 - |",
    "te01-0001": "/dump/raw/te.ark:1234",
}


def write_good(path: Path) -> Path:
    kaldi.write_data_dir(
        path,
        wav_scp=WAV,
        text=TEXT,
        utt2spk=UTT2SPK,
        utt2lang={utt: utt[:2] for utt in TEXT},
        utt2dur={utt: 1.25 for utt in TEXT},
        spk2gender={"hi01": "f", "pa01": "m", "te01": "f"},
    )
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def replace_line(path: Path, number: int, new: str) -> None:
    content = lines(path)
    content[number - 1] = new
    path.write_bytes("".join(content).encode("utf-8"))


def assert_problem(problems: list[str], prefix: str, fragment: str) -> None:
    assert any(p.startswith(prefix) and fragment in p for p in problems), problems


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return write_good(tmp_path / "good")


def test_good_dir_with_indic_text_passes(good: Path) -> None:
    assert kaldi.validate_data_dir(good) == []
    assert (good / "spk2utt").read_text() == "hi01 hi01-0001 hi01-0002\npa01 pa01-0001\nte01 te01-0001\n"
    assert kaldi.read_map(good / "text") == TEXT


def test_unsorted_file(good: Path) -> None:
    content = lines(good / "utt2lang")
    (good / "utt2lang").write_text("".join([content[1], content[0], *content[2:]]), encoding="utf-8")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/utt2lang:2: not sorted", "'hi01-0001'")


def test_ids_differ_between_text_and_wav_scp(good: Path) -> None:
    replace_line(good / "text", 3, "pa01-0009 ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ\n")
    problems = kaldi.validate_data_dir(good)
    assert_problem(problems, f"{good}/text:3: utterance not in utt2spk", "'pa01-0009'")
    assert_problem(problems, f"{good}/text: lacks utterances listed in utt2spk", "'pa01-0001' (utt2spk:3)")


def test_nbsp_in_text(good: Path) -> None:
    replace_line(good / "text", 2, "hi01-0002 यह\u00a0एक\n")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/text:2: no-break space U+00A0", "character 3")


def test_other_non_printing_char_in_text(good: Path) -> None:
    replace_line(good / "text", 4, "te01-0001 నమస్కారం\u200b\n")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/text:4: non-printing character U+200B", "te01")


def test_cr_in_text(good: Path) -> None:
    replace_line(good / "text", 2, "hi01-0002 यह एक\r\n")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/text:2: carriage return", "")


def test_empty_transcript(good: Path) -> None:
    replace_line(good / "text", 3, "pa01-0001\n")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/text:3: empty transcript", "'pa01-0001'")


def test_duplicate_id(good: Path) -> None:
    content = lines(good / "wav.scp")
    (good / "wav.scp").write_text("".join([content[0], content[0], *content[1:]]), encoding="utf-8")
    assert_problem(kaldi.validate_data_dir(good), f"{good}/wav.scp:2: duplicate key", "first on line 1")


def test_missing_newline_at_end(good: Path) -> None:
    (good / "utt2dur").write_bytes((good / "utt2dur").read_bytes().rstrip(b"\n"))
    assert_problem(kaldi.validate_data_dir(good), f"{good}/utt2dur:4: last line is not newline-terminated", "")


def test_speaker_order_disagrees_with_utterance_order(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    # "spk1_a" > "spk10-b" in C order, but speaker "spk1" < "spk10".
    files = {
        "wav.scp": "spk10-b /b.wav\nspk1_a /a.wav\n",
        "text": "spk10-b bee\nspk1_a ay\n",
        "utt2spk": "spk10-b spk10\nspk1_a spk1\n",
        "spk2utt": "spk1 spk1_a\nspk10 spk10-b\n",
    }
    for name, content in files.items():
        (data / name).write_text(content, encoding="utf-8")
    problems = kaldi.validate_data_dir(data)
    assert_problem(problems, f"{data}/utt2spk:2: not sorted by speaker", "'spk1' of 'spk1_a'")
    with pytest.raises(UserInputError, match="not sorted by speaker"):
        kaldi.fix_data_dir(data)
    assert (data / "utt2spk").read_text() == files["utt2spk"]


def test_spk2utt_inconsistent_and_bad_values(good: Path) -> None:
    replace_line(good / "spk2utt", 1, "hi01 hi01-0001\n")
    replace_line(good / "utt2dur", 2, "hi01-0002 -1\n")
    replace_line(good / "spk2gender", 3, "te01 x\n")
    replace_line(good / "wav.scp", 1, "hi01-0001 /corpus/with space.wav\n")
    problems = kaldi.validate_data_dir(good)
    assert_problem(problems, f"{good}/spk2utt:1: utterances differ from utt2spk", "'hi01'")
    assert_problem(problems, f"{good}/utt2dur:2: expected a positive float", "'-1'")
    assert_problem(problems, f"{good}/spk2gender:3: gender must be", "'x'")
    assert_problem(problems, f"{good}/wav.scp:1: path contains whitespace", "hi01-0001")


def test_missing_required_file_and_no_text(good: Path) -> None:
    (good / "text").unlink()
    assert_problem(kaldi.validate_data_dir(good), f"{good}/text: required file is missing", "")
    assert kaldi.validate_data_dir(good, no_text=True) == []


def test_check_audio(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    data = tmp_path / "d"
    kaldi.write_data_dir(
        data,
        wav_scp={"s-1": str(audio), "s-2": "/nonexistent/b.wav", "s-3": f"{audio}:44", "s-4": "cat x |"},
        text={"s-1": "a", "s-2": "b", "s-3": "c", "s-4": "d"},
        utt2spk={"s-1": "s", "s-2": "s", "s-3": "s", "s-4": "s"},
    )
    assert kaldi.validate_data_dir(data) == []
    assert kaldi.validate_data_dir(data, check_audio=True) == [
        f"{data}/wav.scp:2: audio file not found: 's-2' '/nonexistent/b.wav'"
    ]


def test_segments_key_wav_scp_by_recording(tmp_path: Path) -> None:
    data = tmp_path / "seg"
    kaldi.write_data_dir(
        data,
        wav_scp={"rec1": "/r1.wav", "rec2": "/r2.wav"},
        text={"s1-rec1-000": "a", "s1-rec1-001": "b", "s2-rec2-000": "c"},
        utt2spk={"s1-rec1-000": "s1", "s1-rec1-001": "s1", "s2-rec2-000": "s2"},
        segments={"s1-rec1-000": ("rec1", 0, 1.5), "s1-rec1-001": ("rec1", 1.5, 3), "s2-rec2-000": "rec2 0.00 2.10"},
    )
    assert (data / "segments").read_text().splitlines()[1] == "s1-rec1-001 rec1 1.5 3"
    kaldi.subset_data_dir(data, tmp_path / "sub", spk_list=["s1"])
    assert kaldi.read_map(tmp_path / "sub" / "wav.scp") == {"rec1": "/r1.wav"}
    replace_line(data / "segments", 3, "s2-rec2-000 rec3 2.0 1.0\n")
    problems = kaldi.validate_data_dir(data)
    assert_problem(problems, f"{data}/segments:3: expected 'utt recording start end'", "")
    assert_problem(problems, f"{data}/segments:3: recording not in wav.scp", "'rec3'")
    assert_problem(problems, f"{data}/wav.scp:2: recording not used by any segment", "'rec2'")


def test_fix_repairs_mismatched_unsorted_dir(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "wav.scp").write_text(
        "c-2 /c2.wav\na-1 /a1.wav\nb-1 /b1.wav\na-1 /a1.wav\n\nz-9 /z9.wav\n", encoding="utf-8"
    )
    (data / "text").write_text("b-1 बी\na-1 ए\nc-2\n", encoding="utf-8")
    (data / "utt2spk").write_text("a-1 a\nb-1 b\nc-2 c\nd-1 d", encoding="utf-8")
    (data / "spk2utt").write_text("stale stale-1\n", encoding="utf-8")
    (data / "split2").mkdir()
    (data / "split2" / "keep").write_text("x\n")
    assert kaldi.validate_data_dir(data)
    removed = kaldi.fix_data_dir(data)
    assert kaldi.validate_data_dir(data) == []
    assert kaldi.read_map(data / "text") == {"a-1": "ए", "b-1": "बी"}
    assert (data / "spk2utt").read_text() == "a a-1\nb b-1\n"
    assert removed == {
        "utterances": 3,  # c-2 (empty transcript), d-1 (no text, no wav), z-9 (wav only)
        "recordings": 0,
        "speakers": 3,  # c, d, stale
        "empty_transcripts": 1,
        "duplicate_lines": 1,
        "empty_lines": 1,
    }
    assert (data / ".backup" / "text").read_text(encoding="utf-8") == "b-1 बी\na-1 ए\nc-2\n"
    assert (data / "split2" / "keep").read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_fix_refuses_conflicting_duplicates(good: Path) -> None:
    before = (good / "utt2lang").read_text()
    (good / "utt2lang").write_text(before + "te01-0001 hi\n")
    with pytest.raises(UserInputError, match=r"utt2lang:5: duplicate key 'te01-0001'"):
        kaldi.fix_data_dir(good)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({"utt_list": ["hi01-0002", "te01-0001", "unknown"]}, ["hi01-0002", "te01-0001"]),
        ({"spk_list": ["hi01"]}, ["hi01-0001", "hi01-0002"]),
        ({"first": 3}, ["hi01-0001", "hi01-0002", "pa01-0001"]),
        ({"last": 1}, ["te01-0001"]),
        ({"num_utts": 2}, ["hi01-0001", "pa01-0001"]),
    ],
)
def test_subset(good: Path, tmp_path: Path, selection: dict, expected: list[str]) -> None:
    dst = tmp_path / "sub"
    kaldi.subset_data_dir(good, dst, **selection)
    assert kaldi.validate_data_dir(dst) == []
    for name in ("wav.scp", "text", "utt2spk", "utt2lang", "utt2dur"):
        assert list(kaldi.read_map(dst / name)) == expected
    speakers = sorted({utt.split("-")[0] for utt in expected})
    assert list(kaldi.read_map(dst / "spk2gender")) == speakers


def test_subset_utt_list_file_and_too_many(good: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list"
    listing.write_text("pa01-0001 anything after the id\n", encoding="utf-8")
    kaldi.subset_data_dir(good, tmp_path / "sub", utt_list=listing)
    assert list(kaldi.read_map(tmp_path / "sub" / "utt2spk")) == ["pa01-0001"]
    with pytest.raises(UserInputError, match="cannot select 5 utterances out of 4"):
        kaldi.subset_data_dir(good, tmp_path / "sub2", first=5)


def test_write_data_dir_is_atomic(good: Path, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    bad_text = dict(TEXT, **{"pa01-0001": "ਸਤਿ\u00a0ਸ੍ਰੀ"})
    with pytest.raises(UserInputError, match=r"good/text:3: no-break space"):
        kaldi.write_data_dir(good, wav_scp=WAV, text=bad_text, utt2spk=UTT2SPK)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    with pytest.raises(UserInputError, match="contains a line break"):
        kaldi.write_data_dir(tmp_path / "new", wav_scp=WAV, text=dict(TEXT, **{"te01-0001": "a\nb"}), utt2spk=UTT2SPK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]


def test_read_map_errors(tmp_path: Path) -> None:
    path = tmp_path / "map"
    for content, message in [
        (b"a 1\nb 2\na 3\n", "map:3: duplicate key: 'a' (first on line 1)"),
        (b"a 1\nb\n", "map:2: missing value"),
        (b"a 1\r\n", "map:1: carriage return"),
        (b"a 1\nb \xff\n", "map:2: invalid UTF-8"),
    ]:
        path.write_bytes(content)
        with pytest.raises(UserInputError, match=re.escape(message)):
            kaldi.read_map(path)
    path.write_bytes(b"b\tx  y \na\n")
    assert kaldi.read_map(path, allow_empty_value=True) == {"b": "x  y", "a": ""}
    assert kaldi.read_map_lines(path, allow_empty_value=True) == {"b": (1, "x  y"), "a": (2, "")}


def test_write_map_sorts_in_c_order(tmp_path: Path) -> None:
    kaldi.write_map(tmp_path / "m", {"é": "1", "b": "2", "B": "3", "a-1": "4", "a_1": "5"})
    assert (tmp_path / "m").read_text(encoding="utf-8") == "B 3\na-1 4\na_1 5\nb 2\né 1\n"


def test_validate_100k_utterances_is_fast(tmp_path: Path) -> None:
    utts = [f"spk{i // 100:04d}-{i:06d}" for i in range(100_000)]
    data = tmp_path / "big"
    data.mkdir()
    files = {
        "wav.scp": [f"{u} /corpus/{u}.wav" for u in utts],
        "text": [f"{u} नमस्ते दुनिया यह एक परी‌क्षण वाक्य है" for u in utts],
        "utt2spk": [f"{u} {u[:7]}" for u in utts],
        "utt2dur": [f"{u} 3.21" for u in utts],
        "utt2lang": [f"{u} hi" for u in utts],
    }
    for name, content in files.items():
        (data / name).write_text("\n".join(content) + "\n", encoding="utf-8")
    spk2utt = kaldi.spk2utt_from_utt2spk(kaldi.read_map(data / "utt2spk"))
    kaldi.write_map(data / "spk2utt", {spk: " ".join(u) for spk, u in spk2utt.items()})
    start = time.perf_counter()
    assert kaldi.validate_data_dir(data) == []
    assert time.perf_counter() - start < 10.0


def run_wrapper(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run utils/<name>.sh by path alone, as a recipe would without path.sh."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(REPO / "utils" / f"{name}.sh"), *map(str, args)],
        capture_output=True, text=True, env=env, check=False, cwd="/",
    )


def test_validate_wrapper_exits_nonzero_with_message(good: Path) -> None:
    assert run_wrapper("validate_data_dir", "--no-feats", good).returncode == 0
    replace_line(good / "text", 2, "hi01-0002 \n")
    result = run_wrapper("validate_data_dir", good)
    assert result.returncode == 1
    assert f"{good}/text:2: empty transcript: 'hi01-0002'" in result.stdout
    assert "1 problem(s)" in result.stderr


def test_subset_and_fix_wrappers(good: Path, tmp_path: Path) -> None:
    result = run_wrapper("subset_data_dir", "--first", good, "2", tmp_path / "kaldi_form")
    assert result.returncode == 0, result.stderr
    assert list(kaldi.read_map(tmp_path / "kaldi_form" / "utt2spk")) == ["hi01-0001", "hi01-0002"]
    result = run_wrapper("subset_data_dir", "--last", "1", good, tmp_path / "flag_form")
    assert result.returncode == 0, result.stderr
    assert list(kaldi.read_map(tmp_path / "flag_form" / "utt2spk")) == ["te01-0001"]
    result = run_wrapper("subset_data_dir", good, "2", tmp_path / "even")
    assert list(kaldi.read_map(tmp_path / "even" / "utt2spk")) == ["hi01-0001", "pa01-0001"]
    (good / "wav.scp").write_text("".join(reversed(lines(good / "wav.scp"))), encoding="utf-8")
    result = run_wrapper("fix_data_dir", good)
    assert result.returncode == 0, result.stderr
    assert kaldi.validate_data_dir(good) == []


def test_entry_point_main_in_process(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from espnet_adapters.bin import validate_data_dir

    replace_line(good / "utt2lang", 1, "hi01-0001 hi\u00a0\n")
    assert validate_data_dir.main([str(good)]) == 1
    assert f"{good}/utt2lang:1: expected exactly one value field" in capsys.readouterr().out
