"""Decoding a data dir with the real Whisper base: forced vs detected language, batching."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from espnet_adapters.bin import cache_encoder, dump_feats, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_data_dir, write_map
from espnet_adapters.data.synth import load_synth_config, plan_corpus, synthesize_all
from espnet_adapters.scoring.metrics import score_chars
from espnet_adapters.scoring.normalize import normalize_text
from espnet_adapters.whisper.decode import DecodeOptions, iter_batches

REPO = Path(__file__).resolve().parents[2]
SENTENCES = {
    "it": ["Il gatto dorme sul divano.", "Domani andiamo al mare con gli amici."],
    "hi": ["भारत एक विशाल देश है।", "आज मौसम बहुत अच्छा है।"],
}


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Italian and two Hindi espeak-ng utterances in one data dir."""
    root = tmp_path_factory.mktemp("decode")
    speakers = load_synth_config(REPO / "conf" / "synth.yaml").speakers
    maps: dict[str, dict[str, str]] = {"wav_scp": {}, "text": {}, "utt2spk": {}, "utt2lang": {}}
    for lang, sentences in SENTENCES.items():
        utts = plan_corpus(lang, sentences, speakers, {"train": 0, "dev": 0, "test": 2}, root / "audio", 1,
                           voice=lang, noise_dbfs=-60)["test"]
        synthesize_all(utts, lang, -60, nj=2)
        for utt in utts:
            maps["wav_scp"][utt.utt_id] = str(utt.wav_path)  # 22.05 kHz: decoding resamples
            maps["text"][utt.utt_id] = utt.text
            maps["utt2spk"][utt.utt_id] = utt.spk_id
            maps["utt2lang"][utt.utt_id] = lang
    data = root / "data"
    write_data_dir(data, **maps)
    return data


def _decode(data: Path, out: Path, model: Path, *extra: str) -> dict[str, str]:
    status = whisper_decode.main(
        ["--data_dir", str(data), "--out_dir", str(out), "--whisper_model", str(model), "--batch_size", "3", *extra]
    )
    assert status == 0
    return read_map(out / "hyp", allow_empty_value=True)


def test_forced_language_beam_decoding_is_close_on_italian(
    mixed_dir: Path, tmp_path: Path, whisper_base_dir: Path
) -> None:
    hyps = _decode(mixed_dir, tmp_path / "forced", whisper_base_dir, "--max_new_tokens", "60", "--beam_size", "2")
    refs = read_map(mixed_dir / "text")
    assert sorted(hyps) == sorted(refs)
    assert read_map(tmp_path / "forced" / "hyp_lang") == read_map(mixed_dir / "utt2lang")
    italian = sorted(utt for utt in refs if utt.startswith("it_"))
    report = score_chars(
        italian, [normalize_text(refs[u], "it") for u in italian], [normalize_text(hyps[u], "it") for u in italian]
    )
    # Whisper base reads espeak-ng Italian at ~20-30% CER; a broken feature pipeline,
    # language token or conversion gives 100% or more.
    assert report.total.error_rate < 60.0
    stats = json.loads((tmp_path / "forced" / "stats.json").read_text())
    assert stats["utterances"] == 4 and stats["audio_seconds"] > 4
    assert stats["options"]["beam_size"] == 2
    # the safeguards, on by default, are recorded with their counts
    assert stats["options"]["max_tokens_per_second"] == 50.0 and stats["options"]["max_tokens_base"] == 16
    assert stats["options"]["compression_ratio_threshold"] == 2.4
    assert stats["options"]["temperatures"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert stats["options"]["no_repeat_ngram_size"] == 0 and stats["options"]["seed"] == 0
    assert 0 <= stats["fallbacks_unresolved"] <= stats["fallbacks"] <= 4 and 0 <= stats["capped"] <= 4
    assert stats["durations_from"] == "frames"


def test_auto_language_detects_italian(mixed_dir: Path, tmp_path: Path, whisper_base_dir: Path) -> None:
    _decode(mixed_dir, tmp_path / "auto", whisper_base_dir, "--lang_mode", "auto", "--max_new_tokens", "40")
    detected = read_map(tmp_path / "auto" / "hyp_lang")
    assert {detected[u] for u in detected if u.startswith("it_")} == {"it"}
    assert set(detected.values()) <= {lang.strip("<|>") for lang in json.loads((whisper_base_dir / "generation_config.json").read_text())["lang_to_id"]}


def test_features_and_encoder_cache_decode_like_audio(mixed_dir: Path, tmp_path: Path, whisper_base_dir: Path) -> None:
    """Audio, dumped features and cached encoder outputs are three entries to one pipeline."""
    model = str(whisper_base_dir)
    assert dump_feats.main(["--data_dir", str(mixed_dir), "--whisper_model", model, "--out_dir", str(tmp_path / "feats")]) == 0
    scp = tmp_path / "feats" / "feats.scp"
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", model, "--out_dir", str(tmp_path / "cache"),
                               "--shard", "1", "--batch_size", "2"]) == 0
    greedy = ("--max_new_tokens", "40")
    from_audio = _decode(mixed_dir, tmp_path / "audio", whisper_base_dir, *greedy)
    from_feats = _decode(mixed_dir, tmp_path / "f", whisper_base_dir, *greedy, "--feats_scp", str(scp))
    from_cache = _decode(mixed_dir, tmp_path / "c", whisper_base_dir, *greedy, "--encoder_cache", str(tmp_path / "cache"),
                         "--feats_scp", str(scp))
    assert from_feats == from_audio  # the same features, bit for bit
    # float16 storage of the encoder outputs may change a low-confidence token, rarely.
    assert sum(from_cache[u] == from_audio[u] for u in from_audio) >= len(from_audio) - 1


def test_safeguard_options_reach_the_decoder(mixed_dir: Path, tmp_path: Path, whisper_base_dir: Path) -> None:
    """Token caps from the features' frames, then from utt2dur; every option lands in stats.json."""
    options = ("--max_new_tokens", "40", "--max_tokens_per_second", "0.5", "--max_tokens_base", "1",
               "--compression_ratio_threshold", "0", "--temperatures", "0", "0.5", "--no_repeat_ngram_size", "3",
               "--seed", "7")
    free = _decode(mixed_dir, tmp_path / "free", whisper_base_dir, "--max_new_tokens", "40",
                   "--max_tokens_per_second", "0")
    capped = _decode(mixed_dir, tmp_path / "capped", whisper_base_dir, *options)
    stats = json.loads((tmp_path / "capped" / "stats.json").read_text())
    assert stats["options"] | {"temperatures": None} == {
        "beam_size": 1, "batch_size": 3, "max_new_tokens": 40, "lang_mode": "forced", "max_tokens_per_second": 0.5,
        "max_tokens_base": 1, "compression_ratio_threshold": 0.0, "temperatures": None, "no_repeat_ngram_size": 3,
        "seed": 7, "encoder_trim": None, "encoder_span": "window", "script_constraint": False,
    }
    assert stats["options"]["temperatures"] == [0.0, 0.5]
    # espeak-ng utterances of 2-4 s: caps of ceil(1 + 0.5 * seconds) <= 3 tokens, every one reached
    assert stats["capped"] == 4 and stats["fallbacks"] == 0 and stats["durations_from"] == "frames"
    assert all(1 <= len(capped[utt].split()) <= 3 for utt in capped)
    assert sum(len(text.split()) for text in free.values()) > sum(len(text.split()) for text in capped.values())
    assert json.loads((tmp_path / "free" / "stats.json").read_text())["capped"] == 0

    data = tmp_path / "data"
    shutil.copytree(mixed_dir, data)
    write_map(data / "utt2dur", dict.fromkeys(read_map(mixed_dir / "wav.scp"), "0.01"))  # utt2dur comes first
    from_utt2dur = _decode(data, tmp_path / "utt2dur", whisper_base_dir, *options)
    stats = json.loads((tmp_path / "utt2dur" / "stats.json").read_text())
    assert stats["durations_from"] == "utt2dur" and stats["capped"] == 4
    assert all(len(text.split()) <= 2 for text in from_utt2dur.values())  # caps of ceil(1.005) = 2 tokens


def test_invalid_safeguard_options_are_user_errors(mixed_dir: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    status = whisper_decode.main(["--data_dir", str(mixed_dir), "--out_dir", str(tmp_path / "out"),
                                  "--temperatures", "0", "-0.2"])
    assert status == 1
    assert "temperatures must be one or more numbers >= 0" in caplog.text
    assert not (tmp_path / "out").exists()


def test_batches_never_mix_forced_languages() -> None:
    items = [(f"u{i}", np.zeros(10, dtype=np.float32), lang) for i, lang in enumerate("hhihhiih")]
    batches = list(iter_batches(items, DecodeOptions(batch_size=2)))
    assert all(len({lang for _, _, lang in batch}) == 1 for batch in batches)
    assert all(len(batch) <= 2 for batch in batches)
    assert sorted(u for batch in batches for u, _, _ in batch) == sorted(u for u, _, _ in items)
    mixed = list(iter_batches(items, DecodeOptions(batch_size=3, lang_mode="auto")))
    assert [len(batch) for batch in mixed] == [3, 3, 2]
