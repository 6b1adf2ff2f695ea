"""CTranslate2 export (merge + convert, manifest) and the ct2 decoding backend of whisper_decode.

A tiny random Whisper (test_encoder_cache.make_tiny_whisper: Whisper base's
tokenizer and generation config, 2+2 layers of width 64) with a LoRA adapter
whose B weights are random (test_adapter_decode.make_adapter), on the encoder
and the decoder, so that merging changes both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.bin import cache_encoder
from espnet_adapters.bin import export_adapter as export_cli
from espnet_adapters.bin import whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.scoring.results import decoding_variant
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper import ct2_decode
from espnet_adapters.whisper.script import script_suppressed_ids
from espnet_adapters.whisper.decode import DecodeOptions, decode_rows
from espnet_adapters.train.data import dataset_digest
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.export import MANIFEST, TRANSFORMERS_DIR, check_export, export_adapter
from espnet_adapters.whisper.features import stack_features
from espnet_adapters.whisper.inputs import batch_inputs
from espnet_adapters.whisper.model import load_whisper
from test_adapter_decode import make_adapter
from test_encoder_cache import make_tiny_whisper, synthetic_feats, write_feats

CPU = torch.device("cpu")
MAIN_ROOT = Path(__file__).resolve().parents[2]
TARGETS = r"model\.(encoder|decoder)\.layers\.\d+\.(self_attn\.(q_proj|v_proj)|fc1)"
# Caps that bite (0.7 s: 2 + 5 * 0.7 -> 6 tokens), no fallback: the deterministic pass alone.
CAPPED = DecodeOptions(max_new_tokens=24, max_tokens_per_second=5.0, max_tokens_base=2,
                       compression_ratio_threshold=None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ct2")
    tiny = make_tiny_whisper(root / "tiny", whisper_base_dir)
    adapter = make_adapter(tiny, root / "lora", TARGETS)
    (adapter / "lora_meta.json").write_text(json.dumps({"lang": "it", "encoder_trim": None}) + "\n")
    feats = synthetic_feats(WhisperProcessor.from_pretrained(tiny).feature_extractor)
    result = export_adapter(str(tiny), adapter, root / "export", "float32")
    assert result.action == "built"
    return {"root": root, "tiny": tiny, "adapter": adapter, "export": root / "export", "ct2": result.ct2_dir,
            "scp": write_feats(root / "feats", feats)}


def _trimmed(setup: dict[str, Path]) -> list[np.ndarray]:
    """Trimmed features: the synthetic utterances (0.7, 2.0, 3.3 s) and two of random noise (the whole window)."""
    processor = WhisperProcessor.from_pretrained(setup["tiny"])
    feats = list(synthetic_feats(processor.feature_extractor).values())
    rng = np.random.default_rng(3)
    return feats + [rng.standard_normal((3000, 80)).astype(np.float32) * 0.5 for _ in range(2)]


def _features(setup: dict[str, Path]) -> tuple[torch.Tensor, list[float]]:
    """:func:`_trimmed` stacked, and their durations."""
    return stack_features(_trimmed(setup)), [0.7, 2.0, 3.3, 30.0, 30.0]


def test_merged_export_equals_the_peft_model(setup: dict[str, Path]) -> None:
    features, _ = _features(setup)
    peft_model, _ = load_whisper(str(setup["tiny"]), CPU, setup["adapter"])
    merged = WhisperForConditionalGeneration.from_pretrained(setup["export"] / TRANSFORMERS_DIR).eval()
    base, _ = load_whisper(str(setup["tiny"]), CPU)
    decoder_input_ids = torch.tensor([[50258, 50274, 50359, 50363, 400, 1000]] * len(features))
    with torch.inference_mode():
        want = peft_model(input_features=features, decoder_input_ids=decoder_input_ids).logits
        got = merged(input_features=features, decoder_input_ids=decoder_input_ids).logits
        plain = base(input_features=features, decoder_input_ids=decoder_input_ids).logits
    scale = float(want.abs().max())
    assert torch.allclose(got, want, rtol=0, atol=1e-4 * scale), float((got - want).abs().max())
    assert float((plain - want).abs().max()) > 0.05 * scale  # the adapter is really merged in
    assert sorted(p.name for p in setup["ct2"].iterdir()) == [
        "config.json", "model.bin", "preprocessor_config.json", "tokenizer.json", "vocabulary.json"]


@pytest.mark.parametrize(("encoder_trim", "beam_size", "script"),
                         [(None, 1, False), (1.0, 1, False), (None, 3, False), (None, 1, True)])
def test_ct2_float32_tokens_equal_transformers(setup: dict[str, Path], encoder_trim: float | None,
                                              beam_size: int, script: bool) -> None:
    """Greedy and beam search, rows stopped at their caps (beam: searched again up to the cap) and not,
    and the script constraint (the same tokens forbidden per row's language)."""
    features, durations = _features(setup)
    languages = ["it", "hi", "it", "te", "it"]
    caps = [6, 12, 19, 24, 24]
    if encoder_trim is not None:  # the synthetic utterances only: the decoder sees (3.3 + 1) s of frames
        features, durations, languages, caps = features[:3], durations[:3], languages[:3], caps[:3]
    opts = DecodeOptions(**{**CAPPED.as_dict(), "encoder_trim": encoder_trim, "beam_size": beam_size,
                            "script_constraint": script})
    merged, processor = load_whisper(str(setup["export"] / TRANSFORMERS_DIR), CPU)
    batch = [(str(i), f, lang) for i, (f, lang) in enumerate(zip(_trimmed(setup), languages))]
    inputs = batch_inputs(batch, None, model=merged, durations=durations, encoder_trim=encoder_trim)
    want = decode_rows(merged, processor.tokenizer, **inputs, languages=languages, opts=opts, durations=durations)
    whisper = ct2_decode.open_ct2_whisper(setup["ct2"], str(setup["tiny"]))
    encoded = ct2_decode.encode(whisper.model, features, durations, encoder_trim)
    assert encoded.shape[1] == (1500 if encoder_trim is None else 215)
    got = ct2_decode.decode_rows(whisper.model, processor.tokenizer, encoded, languages=languages, opts=opts,
                                 durations=durations)
    assert [row.tokens for row in got] == [row.tokens for row in want]
    assert [row.text for row in got] == [row.text for row in want]
    assert [row.cap for row in got] == caps
    assert any(row.capped for row in want) and all(row.tokens for row in want)
    if script:
        for row, lang in zip(got, languages):
            assert not set(row.tokens) & set(script_suppressed_ids(processor.tokenizer, lang)), lang


def test_ct2_beam_search_stops_capped_rows_like_transformers(setup: dict[str, Path]) -> None:
    """transformers ends every beam of a row at its cap; cutting CTranslate2's best longer beam would not do."""
    rng = np.random.default_rng(5)
    features = stack_features([rng.standard_normal((3000, 80)).astype(np.float32) * scale
                               for scale in (0.1, 0.3, 0.5, 1.0, 2.0, 0.05, 0.2, 0.8)])
    languages = ["it", "hi", "en", "pa", "te", "it", "fr", "de"]
    durations = [0.2 * (index + 1) for index in range(len(languages))]  # caps 3 to 10: the batch runs to 10
    opts = DecodeOptions(beam_size=3, max_new_tokens=12, max_tokens_per_second=5.0, max_tokens_base=2,
                         compression_ratio_threshold=None)
    merged, processor = load_whisper(str(setup["export"] / TRANSFORMERS_DIR), CPU)
    want = decode_rows(merged, processor.tokenizer, input_features=features, languages=languages, opts=opts,
                       durations=durations)
    whisper = ct2_decode.open_ct2_whisper(setup["ct2"], str(setup["tiny"]))
    encoded = ct2_decode.encode(whisper.model, features, durations, None)
    got = ct2_decode.decode_rows(whisper.model, processor.tokenizer, encoded, languages=languages, opts=opts,
                                 durations=durations)
    assert [row.tokens for row in got] == [row.tokens for row in want]
    assert [len(row.tokens) for row in want] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_ct2_encoder_trim_cuts_the_frames(setup: dict[str, Path]) -> None:
    features, durations = _features(setup)
    whisper = ct2_decode.open_ct2_whisper(setup["ct2"], str(setup["tiny"]))
    full = ct2_decode.encode(whisper.model, features[:2], durations[:2], None)
    trimmed = ct2_decode.encode(whisper.model, features[:2], durations[:2], 1.0)
    assert full.shape == (2, 1500, 64) and trimmed.shape == (2, 150, 64)  # (2.0 + 1.0) s * 50
    np.testing.assert_array_equal(trimmed, full[:, :150])


def test_ct2_fallback_resamples_only_looping_rows(setup: dict[str, Path]) -> None:
    features, durations = _features(setup)
    whisper = ct2_decode.open_ct2_whisper(setup["ct2"], str(setup["tiny"]))
    tokenizer = whisper.processor.tokenizer
    encoded = ct2_decode.encode(whisper.model, features, durations, None)
    languages = ["it"] * len(features)
    greedy = ct2_decode.decode_rows(whisper.model, tokenizer, encoded, languages=languages,
                                    opts=DecodeOptions(max_new_tokens=24, compression_ratio_threshold=None))
    # A threshold between the rows' ratios: only the rows above it are sampled again.
    ratios = sorted(row.compression_ratio for row in greedy)
    assert ratios[0] < ratios[-1]
    threshold = (ratios[0] + ratios[-1]) / 2
    opts = DecodeOptions(max_new_tokens=24, compression_ratio_threshold=threshold, temperatures=(0.0, 1.0), seed=7)
    rows = ct2_decode.decode_rows(whisper.model, tokenizer, encoded, languages=languages, opts=opts)
    for first, row in zip(greedy, rows, strict=True):
        if first.compression_ratio <= threshold:
            assert (row.attempts, row.temperature, row.tokens) == (1, 0.0, first.tokens)
        else:
            assert (row.attempts, row.temperature) == (2, 1.0) and row.tokens != first.tokens
            assert row.passed == (row.compression_ratio <= threshold) and len(row.tokens) <= 24


def test_ct2_fallback_is_reproducible_run_to_run(setup: dict[str, Path], tmp_path: Path) -> None:
    data = _data_dir(setup, tmp_path)
    outputs = []
    for run in ("a", "b"):
        command = [sys.executable, "-m", "espnet_adapters.bin.whisper_decode", "--data_dir", str(data),
                   "--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]), "--decode_backend", "ct2",
                   "--ct2_dir", str(setup["ct2"]), "--max_new_tokens", "24", "--compression_ratio_threshold", "0.01",
                   "--temperatures", "0", "0.5", "1", "--out_dir", str(tmp_path / run)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=MAIN_ROOT,
                              env={**os.environ, "PYTHONPATH": str(MAIN_ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(read_map(tmp_path / run / "hyp", allow_empty_value=True))
        stats = json.loads((tmp_path / run / "stats.json").read_text())
        assert stats["fallbacks"] == 3 and stats["fallbacks_unresolved"] == 3
    assert outputs[0] == outputs[1]


def test_export_is_a_no_op_when_current_and_adds_quantizations(setup: dict[str, Path]) -> None:
    manifest_path = setup["export"] / MANIFEST
    before = manifest_path.stat().st_mtime_ns
    again = export_adapter(str(setup["tiny"]), setup["adapter"], setup["export"], "float32")
    assert again.action == "up to date" and manifest_path.stat().st_mtime_ns == before
    added = export_adapter(str(setup["tiny"]), setup["adapter"], setup["export"], "int8")
    assert added.action == "added" and added.ct2_dir == setup["export"] / "ct2_int8"
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest["ct2"]) == ["ct2_float32", "ct2_int8"]
    assert manifest["adapter"]["lang"] == "it" and manifest["adapter"]["dir"] == str(setup["adapter"])
    assert manifest["adapter"]["files"] == ["adapter_config.json", "adapter_model.safetensors", "lora_meta.json"]
    assert (setup["adapter"] / "README.md").is_file()  # peft's model card is not part of the checksum
    assert len(manifest["base"]["sha256"]) == 64 and manifest["base"]["files"] == ["config.json", "model.safetensors"]
    assert set(manifest["versions"]) >= {"ctranslate2", "transformers", "peft", "torch"}
    assert json.loads((setup["export"] / "ct2_float32" / "config.json").read_text())["lang_ids"]


def test_changed_adapter_rebuilds_the_export(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert export_cli.main(["--whisper_model", str(setup["tiny"]), "--adapter_dir", str(setup["adapter"]),
                            "--out_dir", str(out), "--quantization", "int8"]) == 0
    signature = json.loads((out / MANIFEST).read_text())["signature"]
    assert signature == json.loads((setup["export"] / MANIFEST).read_text())["signature"]  # content, not paths
    changed = make_adapter(setup["tiny"], tmp_path / "lora2", TARGETS)
    rebuilt = export_adapter(str(setup["tiny"]), changed, out, "int8")
    assert rebuilt.action == "built" and rebuilt.manifest["signature"] != signature
    assert export_cli.main(["--whisper_model", str(setup["tiny"]), "--adapter_dir", str(tmp_path / "nope"),
                            "--out_dir", str(tmp_path / "bad")]) == 1
    assert not (tmp_path / "bad").exists()


def test_export_of_another_base_is_refused(setup: dict[str, Path], tmp_path: Path, whisper_base_dir: Path) -> None:
    other = make_tiny_whisper(tmp_path / "other", whisper_base_dir, seed=1)
    manifest = setup["export"] / MANIFEST
    with pytest.raises(UserInputError, match=rf"^{manifest}: exported from base .* but decoding with "
                                             rf"--whisper_model {other} "):
        check_export(setup["ct2"], str(other))
    assert check_export(setup["ct2"], str(setup["tiny"])).quantization == "float32"
    data = tmp_path / "data"
    data.mkdir()
    write_map(data / "utt2lang", dict.fromkeys(read_map(setup["scp"]), "it"))
    assert whisper_decode.main(["--data_dir", str(data), "--feats_scp", str(setup["scp"]), "--out_dir",
                                str(tmp_path / "out"), "--whisper_model", str(other), "--decode_backend", "ct2",
                                "--ct2_dir", str(setup["ct2"])]) == 1
    assert not (tmp_path / "out").exists()


def _data_dir(setup: dict[str, Path], tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    utts = list(read_map(setup["scp"]))
    write_map(data / "wav.scp", {utt: "unused.wav" for utt in utts})
    write_map(data / "utt2lang", dict(zip(utts, ["it", "hi", "it"])))
    write_map(data / "utt2dur", dict(zip(utts, ["0.7", "2.0", "3.3"])))
    return data


def test_whisper_decode_ct2_backend_writes_outputs_and_its_variant(setup: dict[str, Path], tmp_path: Path) -> None:
    data = _data_dir(setup, tmp_path)
    common = ["--data_dir", str(data), "--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]),
              "--max_new_tokens", "24", "--max_tokens_per_second", "5", "--max_tokens_base", "2",
              "--batch_size", "2"]
    assert whisper_decode.main([*common, "--adapter_dir", str(setup["adapter"]), "--merge_adapter", "true",
                                "--out_dir", str(tmp_path / "hf")]) == 0
    assert whisper_decode.main([*common, "--decode_backend", "ct2", "--ct2_dir", str(setup["ct2"]),
                                "--num_threads", "2", "--out_dir", str(tmp_path / "ct2")]) == 0
    hf_hyp = read_map(tmp_path / "hf" / "hyp", allow_empty_value=True)
    ct2_hyp = read_map(tmp_path / "ct2" / "hyp", allow_empty_value=True)
    assert ct2_hyp == hf_hyp and sorted(ct2_hyp) == ["utt0", "utt1", "utt2"]
    assert read_map(tmp_path / "ct2" / "hyp_lang") == {"utt0": "it", "utt1": "hi", "utt2": "it"}
    stats = json.loads((tmp_path / "ct2" / "stats.json").read_text())
    hf_stats = json.loads((tmp_path / "hf" / "stats.json").read_text())
    assert stats["decode_backend"] == "ct2-float32" and "decode_backend" not in hf_stats  # hf: as before
    assert stats["ct2_compute_type"] == "float32" and stats["ct2_quantization"] == "float32"
    assert stats["options_changed"]["decode_backend"] == "ct2-float32"
    assert "decode_backend" not in hf_stats["options_changed"]
    assert stats["adapter_dir"] == str(setup["adapter"]) and stats["num_threads"] == 2
    assert stats["capped"] == hf_stats["capped"] and stats["utterances"] == 3
    assert decoding_variant(tmp_path / "ct2") == ("default decode_backend=ct2-float32 max_new_tokens=24 "
                                                  "max_tokens_base=2 max_tokens_per_second=5.0")
    assert decoding_variant(tmp_path / "hf") == "default max_new_tokens=24 max_tokens_base=2 max_tokens_per_second=5.0"
    # Whisper's language detection: the same languages and texts.
    for backend in ("hf", "ct2"):
        extra = ["--adapter_dir", str(setup["adapter"]), "--merge_adapter", "true"] if backend == "hf" else [
            "--decode_backend", "ct2", "--ct2_dir", str(setup["ct2"])]
        assert whisper_decode.main([*common, *extra, "--lang_mode", "auto", "--out_dir",
                                    str(tmp_path / f"{backend}_auto")]) == 0
    detected = read_map(tmp_path / "ct2_auto" / "hyp_lang")
    assert detected == read_map(tmp_path / "hf_auto" / "hyp_lang") and sorted(detected) == ["utt0", "utt1", "utt2"]
    assert read_map(tmp_path / "ct2_auto" / "hyp", allow_empty_value=True) == read_map(
        tmp_path / "hf_auto" / "hyp", allow_empty_value=True)
    # int8: its own variant
    export_adapter(str(setup["tiny"]), setup["adapter"], setup["export"], "int8")
    assert whisper_decode.main([*common, "--decode_backend", "ct2", "--ct2_dir", str(setup["export"] / "ct2_int8"),
                                "--out_dir", str(tmp_path / "int8")]) == 0
    int8 = json.loads((tmp_path / "int8" / "stats.json").read_text())
    assert int8["options_changed"]["decode_backend"] == "ct2-int8_float32"


def test_a_language_whisper_lacks_is_a_user_error(setup: dict[str, Path]) -> None:
    tokenizer = WhisperProcessor.from_pretrained(setup["tiny"]).tokenizer
    assert ct2_decode.prompt_ids(tokenizer, "hi") == [50258, 50276, 50359, 50363]
    with pytest.raises(UserInputError, match=r"language 'xx' \(utt2lang\) has no Whisper language token <\|xx\|>"):
        ct2_decode.prompt_ids(tokenizer, "xx")


def test_ct2_backend_option_errors(setup: dict[str, Path], tmp_path: Path) -> None:
    data = _data_dir(setup, tmp_path)
    common = ["--data_dir", str(data), "--whisper_model", str(setup["tiny"]), "--out_dir", str(tmp_path / "out")]
    parser = whisper_decode.get_parser()
    cases = [
        (["--decode_backend", "ct2"], r"needs --ct2_dir"),
        (["--decode_backend", "ct2", "--ct2_dir", str(setup["ct2"]), "--encoder_cache", str(tmp_path / "c")],
         rf"{tmp_path / 'c'}: cached encoder outputs are transformers'"),
        (["--decode_backend", "ct2", "--ct2_dir", str(setup["ct2"]), "--adapter_dir", str(setup["adapter"])],
         rf"{setup['adapter']}: --decode_backend ct2 takes no --adapter_dir"),
        (["--ct2_dir", str(setup["ct2"])], r"--ct2_dir is only read with --decode_backend ct2"),
        (["--decode_backend", "ct2", "--ct2_dir", str(setup["export"])], rf"{setup['export']}: no model.bin"),
        (["--decode_backend", "ct2", "--ct2_dir", str(setup["ct2"]), "--encoder_trim", "1.0"],
         rf"{setup['export'] / 'adapter'}: the adapter was trained with encoder_trim none"),
    ]
    for extra, message in cases:
        with pytest.raises(UserInputError, match=message):
            whisper_decode.run(parser.parse_args([*common, *extra]))
    assert not (tmp_path / "out").exists()


def test_ct2_encoder_cache_holds_the_transformers_outputs(setup: dict[str, Path], tmp_path: Path) -> None:
    """cache_encoder --backend ct2 on a float32 export of the base: the same cache as transformers' within
    the float16 rounding, read by the same EncoderCache (fingerprint of the model and features)."""
    base = export_adapter(str(setup["tiny"]), None, tmp_path / "export_base", "float32")
    common = ["--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]), "--shard", "1"]
    assert cache_encoder.main([*common, "--out_dir", str(tmp_path / "hf")]) == 0
    assert cache_encoder.main([*common, "--out_dir", str(tmp_path / "ct2"), "--backend", "ct2",
                               "--ct2_dir", str(base.ct2_dir)]) == 0
    utts = list(read_map(setup["scp"]))
    fingerprint = encoder_fingerprint(str(setup["tiny"]), setup["scp"])
    want = EncoderCache(tmp_path / "hf", fingerprint).get_batch(utts).float()
    got = EncoderCache(tmp_path / "ct2", fingerprint).get_batch(utts).float()
    assert got.shape == want.shape
    # float16 has 11 significant bits: the two encoders' ~1e-5 differences round to at most one ulp
    torch.testing.assert_close(got, want, rtol=2 ** -10, atol=1e-3)
    # The cache records its encoder, so a training's data digest (over fingerprint.json) tells the two
    # apart (a training on the other one starts over), and no job adds shards of another encoder.
    recorded = json.loads((tmp_path / "ct2" / "fingerprint.json").read_text())
    assert recorded["encoder"].startswith("ctranslate2 float32 model.bin sha256 ")
    assert "encoder" not in json.loads((tmp_path / "hf" / "fingerprint.json").read_text())
    data = tmp_path / "data"
    data.mkdir()
    write_map(data / "text", dict.fromkeys(utts, "a"))
    write_map(data / "utt2lang", dict.fromkeys(utts, "it"))
    assert dataset_digest(data, setup["scp"], tmp_path / "hf") != dataset_digest(data, setup["scp"], tmp_path / "ct2")
    with pytest.raises(UserInputError, match=r"ct2: computed by ctranslate2 float32 .*, this job uses transformers"):
        cache_encoder.run(cache_encoder.get_parser().parse_args(
            [*common[:-1], "2", "--out_dir", str(tmp_path / "ct2")]))


def test_ct2_encoder_cache_refuses_what_is_not_the_base_in_float32(setup: dict[str, Path], tmp_path: Path) -> None:
    common = ["--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]), "--shard", "1",
              "--out_dir", str(tmp_path / "cache")]
    # the adapter's export: its encoder is not the base model's
    with pytest.raises(UserInputError, match=r"manifest.json: an export with an adapter merged in"):
        cache_encoder.run(cache_encoder.get_parser().parse_args([*common, "--backend", "ct2",
                                                                 "--ct2_dir", str(setup["ct2"])]))
    int8 = export_adapter(str(setup["tiny"]), None, tmp_path / "export_base", "int8")
    with pytest.raises(UserInputError, match=r"manifest.json: int8 weights.*float32 only"):
        cache_encoder.run(cache_encoder.get_parser().parse_args([*common, "--backend", "ct2",
                                                                 "--ct2_dir", str(int8.ct2_dir)]))
    with pytest.raises(UserInputError, match=r"--encoder_top 1: the states below the top layers need --backend hf"):
        cache_encoder.run(cache_encoder.get_parser().parse_args([*common, "--backend", "ct2", "--encoder_top", "1",
                                                                 "--ct2_dir", str(int8.ct2_dir)]))
    with pytest.raises(UserInputError, match=r"--ct2_dir goes with --backend ct2"):
        cache_encoder.run(cache_encoder.get_parser().parse_args([*common, "--ct2_dir", str(int8.ct2_dir)]))
    assert not (tmp_path / "cache").exists()
