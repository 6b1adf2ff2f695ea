"""The encoder cache: round trip, fingerprint, and decoding from cached outputs.

A tiny random Whisper (same tokenizer, features and generation config as the
converted base, 2+2 layers of width 64) keeps these tests fast; its
``make_tiny_whisper`` is shared with test_adapter_decode.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from espnet_adapters.bin import cache_encoder, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, decode_features, detect_languages
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import SAMPLE_RATE, logmel, stack_features
from espnet_adapters.whisper.model import load_whisper

GREEDY = DecodeOptions(max_new_tokens=8)


def make_tiny_whisper(out_dir: Path, base_dir: Path, d_model: int = 64, seed: int = 0) -> Path:
    """A random-weight WhisperForConditionalGeneration that decodes like the real one, saved to ``out_dir``."""
    config = WhisperConfig.from_pretrained(base_dir)
    config.update({
        "d_model": d_model, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 2 * d_model, "decoder_ffn_dim": 2 * d_model,
        "init_std": 0.2,  # peaked logits: greedy choices are not near-ties
    })
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(base_dir)
    model.save_pretrained(out_dir)
    WhisperProcessor.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


def synthetic_feats(extractor: WhisperFeatureExtractor, count: int = 3) -> dict[str, np.ndarray]:
    """Trimmed features of a few tone-plus-noise utterances of different lengths."""
    rng = np.random.default_rng(0)
    feats = {}
    for index in range(count):
        seconds = 0.7 + 1.3 * index
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        audio = 0.2 * np.sin(2 * np.pi * (200 + 150 * index) * t) + 0.02 * rng.standard_normal(t.size)
        feats[f"utt{index}"] = logmel(audio.astype(np.float32), extractor)
    return feats


def write_feats(directory: Path, feats: dict[str, np.ndarray]) -> Path:
    """A dump_feats-like output: feats.ark, feats.scp, feats_shape."""
    directory.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{directory / 'feats.ark'},{directory / 'feats.scp'}") as writer:
        for utt, mat in feats.items():
            writer(utt, mat)
    write_map(directory / "feats_shape", {utt: f"{m.shape[0]},{m.shape[1]}" for utt, m in feats.items()})
    return directory / "feats.scp"


def tiny_with_feats(root: Path, base_dir: Path, count: int = 4) -> tuple[Path, dict[str, np.ndarray], Path]:
    """A tiny Whisper under ``root/tiny``, ``count`` synthetic utterances and their dumped features:
    (model dir, features, feats.scp)."""
    tiny = make_tiny_whisper(root / "tiny", base_dir)
    feats = synthetic_feats(WhisperFeatureExtractor.from_pretrained(tiny), count=count)
    return tiny, feats, write_feats(root / "feats", feats)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> Path:
    return make_tiny_whisper(tmp_path_factory.mktemp("tiny") / "tiny-whisper", whisper_base_dir)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, tiny: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Features of 3 utterances and their cache, written by two cache_encoder jobs."""
    root = tmp_path_factory.mktemp("cache")
    feats = synthetic_feats(WhisperProcessor.from_pretrained(tiny).feature_extractor)
    scp = write_feats(root / "feats", feats)
    write_map(root / "keys.1", {"utt0": "", "utt2": ""})
    write_map(root / "keys.2", {"utt1": ""})
    for job in (1, 2):
        assert cache_encoder.main([
            "--feats_scp", str(scp), "--keys", str(root / f"keys.{job}"), "--whisper_model", str(tiny),
            "--out_dir", str(root / "cache"), "--shard", str(job), "--batch_size", "2",
        ]) == 0
    return scp, root / "cache", feats


def test_cache_round_trip_matches_the_encoder(cached: tuple[Path, Path, dict], tiny: Path) -> None:
    scp, cache_dir, feats = cached
    cache = EncoderCache(cache_dir, encoder_fingerprint(str(tiny), scp))
    assert len(cache) == 3 and "utt1" in cache and "nope" not in cache
    assert sorted(p.name for p in cache_dir.iterdir()) == ["fingerprint.json", "shard.1.safetensors", "shard.2.safetensors"]
    model, _ = load_whisper(str(tiny), torch.device("cpu"))
    utts = ["utt2", "utt0", "utt1"]
    with torch.inference_mode():
        direct = model.get_encoder()(input_features=stack_features([feats[u] for u in utts])).last_hidden_state
    batch = cache.get_batch(utts)
    assert batch.shape == (3, 1500, 64) and batch.dtype == torch.float32
    assert torch.allclose(batch, direct, rtol=1e-3, atol=1e-3 * float(direct.abs().max()))
    assert torch.equal(cache.get("utt0"), batch[1])


def test_stale_fingerprint_is_a_clear_error(cached: tuple[Path, Path, dict], tiny: Path, tmp_path: Path) -> None:
    scp, cache_dir, feats = cached
    other = write_feats(tmp_path / "other", {utt: m + 0.5 for utt, m in feats.items()})
    with pytest.raises(UserInputError, match=rf"{cache_dir}: stale cache: base model or features changed; re-run stage 4"):
        EncoderCache(cache_dir, encoder_fingerprint(str(tiny), other))
    # A job given other features refuses to add its shard to this cache.
    status = cache_encoder.main(["--feats_scp", str(other), "--whisper_model", str(tiny),
                                 "--out_dir", str(cache_dir), "--shard", "3"])
    assert status == 1 and not (cache_dir / "shard.3.safetensors").exists()
    # Rewriting the model changes the fingerprint too.
    config = json.loads((tiny / "config.json").read_text())
    assert encoder_fingerprint(str(tiny), scp) == EncoderCache(cache_dir).fingerprint
    (tmp_path / "changed").mkdir()
    for name in ("model.safetensors", "config.json"):
        (tmp_path / "changed" / name).write_bytes((tiny / name).read_bytes())
    config["dropout"] = 0.1
    (tmp_path / "changed" / "config.json").write_text(json.dumps(config))
    assert encoder_fingerprint(str(tmp_path / "changed"), scp) != EncoderCache(cache_dir).fingerprint


def test_missing_shard_is_a_clear_error(cached: tuple[Path, Path, dict], tmp_path: Path) -> None:
    _, cache_dir, _ = cached
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("fingerprint.json", "shard.2.safetensors"):
        (partial / name).symlink_to(cache_dir / name)
    with pytest.raises(UserInputError, match=r"partial: shards \[1\] are missing"):
        EncoderCache(partial)


def test_decoding_from_encoder_outputs_equals_decoding_from_features(cached: tuple[Path, Path, dict], tiny: Path) -> None:
    _, _, feats = cached
    model, processor = load_whisper(str(tiny), torch.device("cpu"))
    features = stack_features(list(feats.values()))
    with torch.inference_mode():
        outputs = model.get_encoder()(input_features=features).last_hidden_state
    for opts in (GREEDY, DecodeOptions(beam_size=2, max_new_tokens=6)):
        languages = ["hi", "it", "te"]
        from_feats = decode_features(model, processor.tokenizer, input_features=features, languages=languages, opts=opts)
        from_outputs = decode_features(model, processor.tokenizer, encoder_outputs=outputs, languages=languages, opts=opts)
        assert from_feats == from_outputs and any(from_feats)
    assert detect_languages(model, input_features=features) == detect_languages(model, encoder_outputs=outputs)
    with pytest.raises(ValueError, match="exactly one"):
        decode_features(model, processor.tokenizer, input_features=features, encoder_outputs=outputs,
                        languages=languages, opts=GREEDY)


def test_whisper_decode_from_cache_and_features(cached: tuple[Path, Path, dict], tiny: Path, tmp_path: Path) -> None:
    scp, cache_dir, feats = cached
    data = tmp_path / "data"
    data.mkdir()
    write_map(data / "wav.scp", {utt: "unused.wav" for utt in feats})  # never read: features are given
    write_map(data / "utt2lang", dict.fromkeys(feats, "it"))
    common = ["--data_dir", str(data), "--whisper_model", str(tiny), "--max_new_tokens", "8"]
    hyps = {}
    for name, extra in (("feats", ["--feats_scp", str(scp)]),
                        ("cache", ["--encoder_cache", str(cache_dir), "--feats_scp", str(scp)])):
        assert whisper_decode.main([*common, *extra, "--out_dir", str(tmp_path / name)]) == 0
        hyps[name] = read_map(tmp_path / name / "hyp", allow_empty_value=True)
        assert json.loads((tmp_path / name / "stats.json").read_text())["input"] in ("feats_scp", "encoder_cache")
    assert sorted(hyps["feats"]) == sorted(feats)
    # float16 storage may flip a near-tie of a random model; the real base shows no difference.
    assert sum(hyps["feats"][u] == hyps["cache"][u] for u in feats) >= 2
