"""Mixing corpora by weights: counts, sampling, pooling, data dirs and the entry point.

Sources are tiny data dirs written with ``write_split`` over short noise wavs: one
with a wav per utterance, one with segments of long recordings, so mixing both
exercises the whole-recording segments.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_adapters.bin import mix_data_dirs as mix_bin
from espnet_adapters.data.corpora.common import Utterance, write_split
from espnet_adapters.data.corpora.mix import mix, mix_counts, mix_data_dirs, read_utterances
from espnet_adapters.data.kaldi import read_map, validate_data_dir
from espnet_adapters.utils.cli import UserInputError

FS = 16000
UTT_SECONDS = 0.5


def _noise(path: Path, seconds: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sf.write(path, rng.normal(0, 0.01, int(seconds * FS)).astype(np.float32), FS)
    return str(path)


def _source(root: Path, tag: str, speakers: int, per_speaker: int, *, segmented: bool) -> Path:
    """A data dir of ``speakers x per_speaker`` utterances ("<tag> sentence <n>")."""
    utts = []
    for s in range(speakers):
        spk = f"{tag}-s{s}"
        recording = f"{spk}-rec"
        long_wav = _noise(root / "audio" / f"{recording}.wav", per_speaker * UTT_SECONDS) if segmented else None
        for i in range(per_speaker):
            utt = f"{spk}-u{i}"
            where = (
                {"audio": long_wav, "recording": recording, "segment": (i * UTT_SECONDS, (i + 1) * UTT_SECONDS)}
                if segmented else {"audio": _noise(root / "audio" / f"{utt}.wav", UTT_SECONDS)}
            )
            utts.append(Utterance(
                utt_id=utt, speaker=spk, text=f"{tag} sentence {s * per_speaker + i}.", lang="hi",
                duration=UTT_SECONDS, gender="f" if s % 2 else "m", **where,
            ))
    write_split(root / "data" / tag, utts, category=tag)
    return root / "data" / tag


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mix")
    return {
        "kathbath": _source(root, "kb", speakers=5, per_speaker=8, segmented=False),
        "indicvoices": _source(root, "iv", speakers=4, per_speaker=10, segmented=True),
    }


@pytest.mark.parametrize("weights", [(0.8, 0.2), (0.5, 0.5), (0.2, 0.8)])
@pytest.mark.parametrize("total", [None, 7, 100])
def test_counts_follow_the_weights(weights: tuple[float, float], total: int | None) -> None:
    shares = {"a": weights[0], "b": weights[1]}
    counts = mix_counts({"a": 400, "b": 300}, shares, total)
    expected_total = total if total is not None else int(min(400 / weights[0], 300 / weights[1]))
    assert sum(counts.values()) == expected_total
    for name, share in shares.items():
        assert abs(counts[name] - share * expected_total) <= 1
        assert counts[name] <= {"a": 400, "b": 300}[name]


def test_weights_are_normalised() -> None:
    assert mix_counts({"a": 100, "b": 100}, {"a": 4, "b": 1}, 10) == {"a": 8, "b": 2}
    assert mix_counts({"a": 8, "b": 2}, {"a": 0.8, "b": 0.2}, None) == {"a": 8, "b": 2}


def test_a_total_a_source_cannot_supply_names_it() -> None:
    with pytest.raises(UserInputError) as err:
        mix_counts({"kathbath": 1000, "commonvoice": 50}, {"kathbath": 0.8, "commonvoice": 0.2}, 400)
    assert str(err.value) == (
        "cannot mix 400 utterances: source 'commonvoice' has 50 utterances but its weight 0.2 needs 80.0;"
        " at most 250 utterances can be mixed at these weights"
    )


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": 1.0}, "source b has no weight"),
        ({"a": 1.0, "b": 1.0, "c": 1.0}, "weight for unknown source c"),
        ({"a": 1.0, "b": 0.0}, "weights must be positive numbers, got b=0.0"),
    ],
)
def test_weights_must_match_the_sources(weights: dict[str, float], message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        mix_counts({"a": 10, "b": 10}, weights, None)


def _utts(tag: str, n: int) -> list[Utterance]:
    return [Utterance(f"{tag}-{i:03d}", tag, f"/{tag}/{i}.wav", f"{tag} {i}", "hi", 1.0) for i in range(n)]


def test_mix_is_a_seeded_sample_and_pooling_takes_everything() -> None:
    pools = {"a": _utts("a", 50), "b": _utts("b", 50)}
    first = mix(pools, {"a": 0.5, "b": 0.5}, 20, seed=1)
    assert first == mix(dict(reversed(pools.items())), {"b": 0.5, "a": 0.5}, 20, seed=1)
    assert first != mix(pools, {"a": 0.5, "b": 0.5}, 20, seed=2)
    assert [name for name, _ in first].count("a") == 10
    pooled = mix(pools, None, None, seed=1)
    assert sorted(u.utt_id for _, u in pooled) == sorted(u.utt_id for p in pools.values() for u in p)
    with pytest.raises(UserInputError, match="a number of utterances needs weights"):
        mix(pools, None, 10, seed=1)


def test_mix_data_dirs_with_and_without_segments(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "mix"
    stats = mix_data_dirs(sources, {"kathbath": 0.5, "indicvoices": 0.5}, out, None, seed=4)
    assert validate_data_dir(out, check_audio=True) == []
    categories = list(read_map(out / "utt2category").values())
    assert (categories.count("kathbath"), categories.count("indicvoices")) == (40, 40)
    segments = read_map(out / "segments")
    wav_scp = read_map(out / "wav.scp")
    kb_utt = next(u for u, c in read_map(out / "utt2category").items() if c == "kathbath")
    assert segments[kb_utt] == f"{kb_utt} 0 0.5"  # whole recording, keyed by its utterance id
    assert wav_scp[kb_utt].endswith(f"{kb_utt}.wav")
    assert set(read_map(out / "spk2gender").values()) == {"m", "f"}
    on_disk = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert on_disk == stats
    assert on_disk["utterances"] == 80 and on_disk["seed"] == 4
    kb = on_disk["sources"]["kathbath"]
    assert (kb["weight"], kb["available"], kb["utterances"], kb["hours"]) == (0.5, 40, 40, round(40 * 0.5 / 3600, 4))
    assert kb["dir"] == str(sources["kathbath"])


def test_mixing_round_trips_through_read_utterances(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pooled"
    mix_data_dirs(sources, None, out, None, seed=1)
    mixed = {u.utt_id: u for u in read_utterances(out)}
    for name, path in sources.items():
        for utt in read_utterances(path):
            assert mixed[utt.utt_id].text == utt.text
            assert mixed[utt.utt_id].audio == utt.audio
            assert mixed[utt.utt_id].segment == (utt.segment or (0.0, utt.duration))


def test_same_utterance_in_two_sources_is_an_error(sources: dict[str, Path], tmp_path: Path) -> None:
    twice = {"one": sources["kathbath"], "two": sources["kathbath"]}
    with pytest.raises(UserInputError, match="utterance kb-s0-u0 is in sources one and two"):
        mix_data_dirs(twice, None, tmp_path / "out", None, seed=1)
    assert not (tmp_path / "out").exists()


def _run(args: list[str]) -> int:
    return mix_bin.main([str(a) for a in args])


def test_entry_point_end_to_end(sources: dict[str, Path], tmp_path: Path) -> None:
    # A held-out set with 3 kathbath sentences, written differently (case, punctuation).
    held = [
        Utterance(f"kb-test-u{i}", "kb-test", _noise(tmp_path / f"t{i}.wav", 0.5), f"KB Sentence {i}!", "hi", 0.5)
        for i in (0, 1, 2)
    ]
    write_split(tmp_path / "kb_test", held)
    out = tmp_path / "mix_train"
    status = _run([
        "--source", f"kathbath={sources['kathbath']}", "--weight", "kathbath=0.8",
        "--source", f"indicvoices={sources['indicvoices']}", "--weight", "indicvoices=0.2",
        "--num_utts", 20, "--seed", 3, "--exclude_text_of", tmp_path / "kb_test", "--out_dir", out,
    ])
    assert status == 0
    assert validate_data_dir(out, check_audio=True) == []
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert {n: s["utterances"] for n, s in stats["sources"].items()} == {"kathbath": 16, "indicvoices": 4}
    assert stats["sources"]["kathbath"]["dropped_shared_text"] == 3
    assert stats["sources"]["kathbath"]["available"] == 37
    assert not {"kb sentence 0.", "kb sentence 1.", "kb sentence 2."} & set(read_map(out / "text").values())


def test_entry_point_pools_without_weights(sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pooled"
    pooled = ["--source", f"a={sources['kathbath']}", "--source", f"b={sources['indicvoices']}"]
    assert _run([*pooled, "--out_dir", out]) == 0
    assert len(read_map(out / "utt2spk")) == 80


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weight", "kb=1"], "source iv has no weight"),
        (["--num_utts", "5"], "--num_utts needs --weight for every source"),
        (["--weight", "kb=1", "--weight", "iv=x"], "--weight iv=x: not a number"),
        (
            ["--weight", "kb=0.5", "--weight", "iv=0.5", "--num_utts", "81"],
            "cannot mix 81 utterances: source 'iv' has 40",
        ),
        (["--source", "kb=/nonexistent"], "--source: 'kb' given twice"),
        (["--source", "broken"], "--source 'broken': expected NAME=VALUE"),
    ],
)
def test_entry_point_bad_input(
    sources: dict[str, Path], tmp_path: Path, caplog, extra: list[str], message: str
) -> None:
    caplog.set_level(logging.ERROR)
    base = ["--source", f"kb={sources['kathbath']}", "--source", f"iv={sources['indicvoices']}"]
    assert _run([*base, *extra, "--out_dir", tmp_path / "out"]) == 1
    assert message in caplog.text
    assert not (tmp_path / "out").exists()
