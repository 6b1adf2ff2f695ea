"""Synthetic code-switching: building the sets, switch detection, segment-routed decoding, the report.

Sources are tiny formatted test sets of two languages whose audio lives in
kaldiio arks (as stage 3 writes them): tones of a language-specific pitch.
Decoding uses a tiny random Whisper (test_encoder_cache.make_tiny_whisper),
two tiny random adapters (test_routing.make_lang_adapter) and a random linear
LID: the end-to-end test checks the plumbing and the formats, while switch
detection and the report's arithmetic are checked on hand-made inputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from test_encoder_cache import make_tiny_whisper
from test_routing import make_lang_adapter

from espnet_adapters.bin import codeswitch_decode, codeswitch_report, make_codeswitch, select_smoothing
from espnet_adapters.codeswitch.detect import Smoothing, Span, detect_spans, smooth_labels, viterbi_labels, window_centers
from espnet_adapters.codeswitch.report import degradation, match_switches, switch_metrics
from espnet_adapters.codeswitch.truth import read_segments_truth, read_times, write_times
from espnet_adapters.data.kaldi import read_map, validate_data_dir, write_data_dir, write_map
from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.models import LidModel
from espnet_adapters.lid.store import save_lid
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec
from espnet_adapters.whisper.model import resolve_model

SR = 16000
LANGS = ("hi", "it")
DURATIONS = (0.6, 1.1, 1.6, 2.4, 4.0)  # seconds; the last is too long for rapid's 3 s pool


def write_formatted_set(root: Path, lang: str, pitch: float) -> Path:
    """A formatted test set (wav.scp into a kaldiio ark, text, utt2spk, utt2lang, utt2dur) of tones."""
    data, ark_dir = root / "dump" / "raw" / f"{lang}_test", root / "dump" / "audio" / f"{lang}_test"
    ark_dir.mkdir(parents=True)
    utts = [f"{lang}spk-{lang}{index}" for index in range(len(DURATIONS))]
    rng = np.random.default_rng(len(lang) + int(pitch))
    with kaldiio.WriteHelper(f"ark,scp:{ark_dir / 'wav.ark'},{ark_dir / 'wav.scp'}",
                             write_function="soundfile") as writer:
        for utt, seconds in zip(utts, DURATIONS):
            t = np.arange(int(seconds * SR)) / SR
            tone = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)
            writer(utt, (SR, (tone * 32767).astype(np.int16)))
    texts = {utt: f"{lang} w{index} end" for index, utt in enumerate(utts)}  # 3 words, no punctuation
    write_data_dir(data, wav_scp=read_map(ark_dir / "wav.scp"), text=texts, utt2spk=dict.fromkeys(utts, f"{lang}spk"),
                   utt2lang=dict.fromkeys(utts, lang), utt2dur=dict(zip(utts, DURATIONS)))
    return data


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("cs_sources")
    return [write_formatted_set(root, lang, pitch) for lang, pitch in zip(LANGS, (220.0, 660.0))]


def make_set(sources: list[Path], root: Path, kind: str, num_utts: int = 4, seed: int = 0) -> Path:
    out = root / f"cs_{kind}"
    args = ["--in_dirs", *map(str, sources), "--out_dir", str(out), "--audio_dir", str(root / "audio" / kind),
            "--kind", kind, "--num_utts", str(num_utts), "--seed", str(seed), "--pause", "0.3"]
    assert make_codeswitch.main(args) == 0
    return out


# --------------------------------------------------------------------------- make_codeswitch


@pytest.mark.parametrize("kind", ["inter", "rapid"])
def test_make_codeswitch_writes_a_valid_dir_with_its_truth(sources: list[Path], tmp_path: Path, kind: str) -> None:
    out = make_set(sources, tmp_path, kind)
    assert validate_data_dir(out) == []
    texts = {**read_map(sources[0] / "text"), **read_map(sources[1] / "text")}
    durations = {**read_map(sources[0] / "utt2dur"), **read_map(sources[1] / "utt2dur")}
    truth, switches = read_segments_truth(out / "segments_truth"), read_times(out / "switches")
    utt2dur, utt2lang, text = read_map(out / "utt2dur"), read_map(out / "utt2lang"), read_map(out / "text")
    assert sorted(truth) == sorted(switches) == sorted(utt2dur) and len(truth) == 4
    assert set(read_map(out / "utt2spk").values()) == {f"cs-{kind}"}
    for utt, segments in truth.items():
        langs = [segment.lang for segment in segments]
        assert len(langs) == (2 if kind == "inter" else 4)
        assert all(a != b for a, b in zip(langs, langs[1:])) and langs[0] == utt2lang[utt]
        assert segments[0].start == 0 and segments[-1].end == pytest.approx(float(utt2dur[utt]), abs=1e-4)
        assert sum(s.end - s.start for s in segments) == pytest.approx(float(utt2dur[utt]), abs=1e-3)
        assert switches[utt] == [s.start for s in segments[1:]]
        assert text[utt] == " ".join(texts[s.source] for s in segments)
        speech = sum(float(durations[s.source]) for s in segments)
        assert float(utt2dur[utt]) == pytest.approx(speech + 0.3 * (len(segments) - 1), abs=1e-3)
        if kind == "rapid":
            assert all(float(durations[s.source]) <= 3.0 for s in segments)
            assert len({s.source for s in segments}) == 4
        audio, rate = sf.read(read_map(out / "wav.scp")[utt], dtype="float32")
        assert rate == SR and len(audio) / SR == pytest.approx(float(utt2dur[utt]), abs=1e-4)
        gap = audio[round((segments[1].start - 0.1) * SR) : round((segments[1].start + 0.1) * SR)]
        assert not gap.any()  # the switch is mid-pause: digital silence around it
    pairs = {(s[0].lang, s[1].lang) for s in truth.values()}
    assert pairs == {("hi", "it"), ("it", "hi")}  # both directions, alternately


def test_make_codeswitch_is_deterministic(sources: list[Path], tmp_path: Path) -> None:
    first, second = make_set(sources, tmp_path / "a", "inter"), make_set(sources, tmp_path / "b", "inter")
    for name in ("text", "utt2lang", "utt2dur", "segments_truth", "switches"):
        assert (first / name).read_text() == (second / name).read_text()
    for utt, wav in read_map(first / "wav.scp").items():
        assert Path(wav).read_bytes() == Path(read_map(second / "wav.scp")[utt]).read_bytes()


def test_rapid_takes_the_shortest_when_too_few_are_short(
    sources: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["--in_dirs", *map(str, sources), "--out_dir", str(tmp_path / "cs"), "--audio_dir", str(tmp_path / "w"),
            "--kind", "rapid", "--num_utts", "2", "--rapid_max_dur", "0.5"]
    with caplog.at_level(logging.WARNING):
        assert make_codeswitch.main(args) == 0
    assert "hi: fewer than 2 utterances of at most 0.5 s; using the shortest (0.60-1.10 s)" in caplog.text
    truth = read_segments_truth(tmp_path / "cs" / "segments_truth")
    assert {s.source for segments in truth.values() for s in segments} == {"hispk-hi0", "hispk-hi1",
                                                                           "itspk-it0", "itspk-it1"}


def test_make_codeswitch_errors(sources: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = ["--out_dir", str(tmp_path / "cs"), "--kind", "inter", "--num_utts", "2"]
    with caplog.at_level(logging.ERROR):
        assert make_codeswitch.main(["--in_dirs", str(sources[0]), "--audio_dir", str(tmp_path / "w"), *base]) == 1
        assert "code-switching needs two languages, found hi" in caplog.text
        args = ["--in_dirs", *map(str, sources), "--audio_dir", str(tmp_path / "cs" / "wav"), *base]
        assert make_codeswitch.main(args) == 1
        assert "is inside --out_dir" in caplog.text
        too_short = ["--in_dirs", *map(str, sources), "--audio_dir", str(tmp_path / "w"), *base, "--max_dur", "1.0"]
        assert make_codeswitch.main(too_short) == 1
        assert f"{sources[0] / 'wav.scp'}:1: no hi utterance of at most" in caplog.text


# --------------------------------------------------------------------------- switch detection and report math


def test_switch_detection_on_a_synthetic_posterior_sequence() -> None:
    centers = window_centers(n_frames=250, win_frames=50, hop_frames=10, frame_seconds=0.02)
    assert centers[0] == pytest.approx(0.5) and centers[10] == pytest.approx(2.5) and len(centers) == 21
    labels = np.array([0] * 10 + [1] * 11)
    labels[4] = 1  # one noisy window in the first language
    posteriors = np.eye(2)[labels] * 0.8 + 0.1
    assert detect_spans(posteriors, centers, 5.0, LANGS, Smoothing("majority", 3)) == [
        Span(0.0, pytest.approx(2.5), "hi"), Span(pytest.approx(2.5), 5.0, "it")
    ]
    unsmoothed = detect_spans(posteriors, centers, 5.0, LANGS, Smoothing("majority", 1))
    assert [span.start for span in unsmoothed] == pytest.approx([0.0, 1.3, 1.5, 2.5])
    assert [span.lang for span in unsmoothed] == ["hi", "it", "hi", "it"]
    # A tie (one vote each at the clipped edge) goes to the larger summed posterior.
    assert smooth_labels(np.array([[0.6, 0.4], [0.1, 0.9], [0.1, 0.9]]), 3).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="odd"):
        smooth_labels(posteriors, 4)


def test_viterbi_finds_known_switch_points_that_a_majority_vote_breaks_up() -> None:
    # 60 windows, switches at windows 20 and 40; 5 lone windows vote for the wrong language, and a
    # run of 3 (a loan word) in the last segment.  Each window's evidence is log(0.8 / 0.2) = 1.39
    # nats: leaving a language and coming back costs 2 x penalty: at 5, 10 nats, more than the run's
    # 3 x 1.39 = 4.2 and far less than a true 20-window segment's ~25; at 1.5, 3 nats: the run is kept.
    truth = np.array([0] * 20 + [1] * 20 + [0] * 20)
    noisy = truth.copy()
    noisy[[3, 11, 25, 33, 50]] ^= 1
    noisy[45:48] ^= 1
    posteriors = np.where(np.eye(2)[noisy] == 1, 0.8, 0.2)
    assert viterbi_labels(posteriors, 0.0).tolist() == noisy.tolist()  # no penalty: the argmaxes
    assert viterbi_labels(posteriors, 5.0).tolist() == truth.tolist()
    kept = truth.copy()
    kept[45:48] = 1
    assert viterbi_labels(posteriors, 1.5).tolist() == kept.tolist()
    voted = smooth_labels(posteriors, 5)  # the vote removes the lone windows, but widens the run
    assert np.flatnonzero(np.diff(voted)).tolist() == [19, 39, 44, 48]
    # A penalty larger than all the evidence for a switch removes it; a tie stays in the current label.
    assert viterbi_labels(posteriors, 100.0).tolist() == [0] * 60
    assert viterbi_labels(np.full((3, 2), 0.5), 0.0).tolist() == [0, 0, 0]
    centers = np.arange(60) * 0.2 + 0.5
    spans = detect_spans(posteriors, centers, 12.5, LANGS, Smoothing("viterbi", switch_penalty=5.0))
    assert [(round(span.start, 2), span.lang) for span in spans] == [(0.0, "hi"), (4.5, "it"), (8.5, "hi")]
    with pytest.raises(ValueError, match="smoothing method"):
        Smoothing("hmm")
    with pytest.raises(ValueError, match="switch_penalty"):
        Smoothing("viterbi", switch_penalty=-1.0)
    assert Smoothing("viterbi", switch_penalty=8.0).flags() == ["--smoothing", "viterbi", "--switch_penalty", "8"]


def test_switch_metrics_match_one_to_one_and_count_false_alarms() -> None:
    truth = {"a": [2.4], "b": [1.0, 3.0], "c": [2.0], "d": [1.0]}
    detected = {"a": [2.5], "b": [1.7, 3.1, 5.0], "c": [], "d": [0.9, 1.05], "e": [1.0]}
    metrics = switch_metrics(truth, detected, tolerance=0.3)
    # hits: a 2.5 (0.1), b 3.1 (0.1), d 1.05 (0.05; 0.9 is the second detection near one true switch:
    # a false alarm, not a second hit); b 1.0 (nearest 1.7) and c 2.0 are missed; "e" has no true switch.
    assert metrics["hits"] == 3 and metrics["missed"] == 2 and metrics["n_true"] == 5
    assert metrics["n_detected"] == 7 and metrics["false_alarms"] == 4  # 1.7, 5.0, 0.9, e's 1.0
    assert metrics["precision"] == pytest.approx(3 / 7) and metrics["recall"] == pytest.approx(3 / 5)
    assert metrics["f1"] == pytest.approx(2 * (3 / 7) * (3 / 5) / (3 / 7 + 3 / 5))
    assert metrics["delay_mean"] == pytest.approx(0.25 / 3) and metrics["delay_median"] == pytest.approx(0.1)
    assert metrics["delay_signed_mean"] == pytest.approx(0.25 / 3)
    # The closest pair is matched first, whatever the order of the lists.
    assert match_switches([1.0, 1.4], [1.3], 0.5) == [(1.4, 1.3)]
    nothing = switch_metrics({"a": [1.0]}, {"a": []}, 0.3)
    assert nothing["precision"] is None and nothing["recall"] == 0.0 and nothing["f1"] == 0.0
    assert degradation(23.0, 20.0) == pytest.approx(15.0) and degradation(5.0, 0.0) is None


def _fake_decoding(data: Path, out: Path, wrong_words: int) -> None:
    """A codeswitch_decode-like dir: segments = reference with words replaced, base = nothing."""
    refs = read_map(data / "text")
    hyp = dict(refs)
    first = next(iter(hyp))
    words = hyp[first].split()
    hyp[first] = " ".join(["zzz"] * wrong_words + words[wrong_words:])
    write_map(out / "segments" / "hyp", hyp)
    write_map(out / "base" / "hyp", dict.fromkeys(refs, ""))
    truth = read_times(data / "switches")
    write_times(out / "segments" / "detected", {utt: [t + 0.2 for t in ts] for utt, ts in truth.items()})
    (out / "segments" / "posteriors").mkdir()
    for utt in refs:
        windows = np.column_stack([np.arange(10) * 0.2 + 0.5, np.linspace(1, 0, 10), np.linspace(0, 1, 10)])
        np.save(out / "segments" / "posteriors" / f"{utt}.npy", windows.astype(np.float32))
    stats = {"systems": {"segments": {}, "base": {}}, "lid": {"labels": list(LANGS)}}
    (out / "stats.json").write_text(json.dumps(stats), encoding="utf-8")


def test_report_on_a_hand_example(sources: list[Path], tmp_path: Path) -> None:
    data = make_set(sources, tmp_path, "inter", num_utts=2)
    _fake_decoding(data, tmp_path / "decode", wrong_words=2)
    truth = read_segments_truth(data / "segments_truth")
    texts = {**read_map(sources[0] / "text"), **read_map(sources[1] / "text")}
    singles = {s.source: texts[s.source] for segments in truth.values() for s in segments}
    one = next(iter(singles))
    singles[one] = "zzz " + " ".join(singles[one].split()[1:])  # one wrong word decoded alone
    write_map(tmp_path / "single_hyp", singles)
    out = tmp_path / "report"
    args = ["--sets", f"{data}:{tmp_path / 'decode'}", "--single_hyps", str(tmp_path / "single_hyp"),
            "--out_dir", str(out)]
    assert codeswitch_report.main(args) == 0
    result = json.loads((out / "results.json").read_text())["sets"]["cs_inter"]
    # 2 utterances of 2 constituents of 3 words: 12 reference words
    assert result["single"]["wer"] == pytest.approx(100 / 12)
    segments, base = result["systems"]["segments"], result["systems"]["base"]
    assert segments["wer"] == pytest.approx(200 / 12) and segments["wer_degradation_pct"] == pytest.approx(100.0)
    assert base["wer"] == 100.0 and base["num_missing_hyps"] == 0 and "switches" not in base
    assert segments["switches"]["delay_mean"] == pytest.approx(0.2) and segments["switches"]["recall"] == 1
    table = (out / "codeswitch.md").read_text()
    assert "|cs_inter|2|2|segments|16.7|" in table and "|+100.0%|100% / 100%|0 / 0|0.20 / 0.20|" in table
    assert ("- cs_inter, segments: WER degradation +100.0% (target < 15%: **not met**); switches within 0.3 s:"
            " recall 100%, precision 100% (2 of 2 true switches found, 0 false alarms)") in table
    assert segments["targets_met"] == {"degradation": False}
    # 0.2 s late is outside a 0.1 s tolerance: both detections are false alarms, both switches missed.
    assert codeswitch_report.main([*args, "--tolerance", "0.1"]) == 0
    late = json.loads((out / "results.json").read_text())["sets"]["cs_inter"]["systems"]["segments"]["switches"]
    assert (late["hits"], late["missed"], late["false_alarms"], late["precision"]) == (0, 2, 2, 0.0)
    assert (out / "posteriors.png").stat().st_size > 0 and (out / "cs_inter" / "single" / "result.txt").is_file()

    del singles[one]
    write_map(tmp_path / "single_hyp", singles)
    args = codeswitch_report.get_parser().parse_args(args)
    with pytest.raises(UserInputError, match=rf"constituent {one} has no hypothesis"):
        codeswitch_report.run(args)


# --------------------------------------------------------------------------- codeswitch_decode end to end


def test_codeswitch_decode_end_to_end(sources: list[Path], tmp_path: Path, whisper_base_dir: Path) -> None:
    tiny = make_tiny_whisper(tmp_path / "tiny", whisper_base_dir)
    spec = LoraSpec(r=4, lora_alpha=8, where="both")
    adapters = {lang: make_lang_adapter(tiny, tmp_path / f"lora_{lang}", lang, spec, seed)
                for seed, lang in enumerate(LANGS, start=1)}
    lid = LidModel(LidConfig(classifier="linear"), 64, len(LANGS))
    save_lid(tmp_path / "lid", lid, list(LANGS), 64, {"base_model": resolve_model(str(tiny))})
    data = make_set(sources, tmp_path, "rapid", num_utts=2)
    out = tmp_path / "decode"
    args = ["--data_dir", str(data), "--lid_dir", str(tmp_path / "lid"), "--out_dir", str(out),
            "--max_new_tokens", "3", "--smoothing", "viterbi", "--switch_penalty", "2",
            *(arg for lang, path in adapters.items() for arg in ("--adapter", f"{lang}={path}"))]
    assert codeswitch_decode.main(args) == 0
    utts = sorted(read_map(data / "wav.scp"))
    truth = read_segments_truth(data / "segments_truth")
    for system in codeswitch_decode.SYSTEMS:
        assert sorted(read_map(out / system / "hyp", allow_empty_value=True)) == utts
    oracle = (out / "oracle_segments" / "hyp_segments").read_text().splitlines()
    assert [line.split()[3] for line in oracle] == [s.lang for utt in utts for s in truth[utt]]
    assert len((out / "base" / "hyp_segments").read_text().splitlines()) == 2
    detected = read_times(out / "segments" / "detected")
    assert sorted(detected) == utts
    for utt in utts:
        windows = np.load(out / "segments" / "posteriors" / f"{utt}.npy")
        assert windows.shape[1] == 1 + len(LANGS) and windows[0, 0] == pytest.approx(0.5)
        assert np.allclose(windows[:, 1:].sum(axis=1), 1.0, atol=1e-5)
    stats = json.loads((out / "stats.json").read_text())
    assert list(stats["systems"]) == list(codeswitch_decode.SYSTEMS) and stats["utterances"] == 2
    assert stats["lid"]["win_frames"] == 50 and stats["lid"]["hop_frames"] == 10
    assert stats["lid"]["smoothing"] == {"method": "viterbi", "switch_penalty": 2.0}
    assert stats["systems"]["oracle_segments"]["pieces"] == 8 and stats["lid_ms_per_utterance"] > 0

    analysis_only = tmp_path / "analysis"
    assert codeswitch_decode.main([*args[:4], "--out_dir", str(analysis_only), *args[6:], "--systems"]) == 0
    assert read_times(analysis_only / "segments" / "detected") == detected
    assert sorted(p.name for p in analysis_only.iterdir()) == ["segments", "stats.json"]
    assert json.loads((analysis_only / "stats.json").read_text())["systems"] == {}

    singles = {s.source: "x" for segments in truth.values() for s in segments}
    write_map(tmp_path / "single_hyp", singles)
    assert codeswitch_report.main(["--sets", f"{data}:{out}", "--single_hyps", str(tmp_path / "single_hyp"),
                                   "--out_dir", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "posteriors.png").stat().st_size > 0
    report = (tmp_path / "report" / "codeswitch.md").read_text()
    assert ("false alarm; delay: |detected - true| of the hits.\n\nSwitches of the segments system, window"
            " labels smoothed by viterbi, switch penalty 2.\n\n|set|") in report


def test_smoothing_is_chosen_on_dev_posteriors_without_decoding(sources: list[Path], tmp_path: Path) -> None:
    """select_smoothing: candidates re-detect switches from saved posteriors; the best dev F1 wins."""
    data = make_set(sources, tmp_path, "inter", num_utts=2)
    truth, switches = read_segments_truth(data / "segments_truth"), read_times(data / "switches")
    out = tmp_path / "dev"
    (out / "segments" / "posteriors").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for utt, segments in truth.items():
        centers = np.arange(0.5, segments[-1].end, 0.2)
        labels = np.array([LANGS.index(next(s.lang for s in segments if s.start <= c < s.end)) for c in centers])
        flips = rng.random(len(labels)) < 0.25  # a quarter of the windows vote for the other language
        posteriors = np.where(np.eye(2)[labels ^ flips] == 1, 0.8, 0.2)
        np.save(out / "segments" / "posteriors" / f"{utt}.npy", np.column_stack([centers, posteriors]))
    (out / "stats.json").write_text(json.dumps({"systems": {}, "lid": {"labels": list(LANGS)}}), encoding="utf-8")
    args = ["--sets", f"{data}:{out}", "--out_dir", str(out), "--tolerance", "0.5"]
    assert select_smoothing.main([*args, "--smooth_windows", "1", "--switch_penalties"]) == 0
    only = json.loads((out / "smoothing.json").read_text())
    assert only["chosen"] == {"method": "majority", "smooth_windows": 1} and only["candidates"][0]["precision"] < 0.5
    assert select_smoothing.main(args) == 0
    selection = json.loads((out / "smoothing.json").read_text())
    assert len(selection["candidates"]) == 5 + 7 and selection["utterances"] == 2
    best = max(row["f1"] for row in selection["candidates"])
    chosen = next(row for row in selection["candidates"] if row["smoothing"] == selection["chosen"])
    assert chosen["f1"] == best > only["candidates"][0]["f1"]
    assert sum(len(times) for times in switches.values()) == chosen["n_true"] == 2
    assert selection["flags"] == Smoothing(**selection["chosen"]).flags()
    assert f"|**{chosen['description']}**|" in (out / "smoothing.md").read_text()
    (out / "segments" / "posteriors" / f"{next(iter(truth))}.npy").unlink()
    assert select_smoothing.main(args) == 1
