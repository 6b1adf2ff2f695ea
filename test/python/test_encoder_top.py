"""LoRA on the top encoder layers (``encoder_top`` in conf/lora): the two-part encoder, its cache, training, decoding.

A tiny random Whisper (2 encoder layers): ``encoder_top: 1`` adapts layer 1
and the decoder; layer 0's states are cached and the frames are cut to the
speech before layer 1.  What must hold: the two parts are Whisper's encoder;
the cache of the lower states is read only as such; the trainer's encoder
(from that cache) is the decoders' (from features) for the adapter; the
adapter records its cut layer and the decoders that cannot honour it refuse.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from test_train import cli_args, make_set, run_cli, tiny_dir, write_yaml  # noqa: F401  (tiny_dir: a fixture)
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.bin import cache_encoder, export_adapter, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.train.data import load_dataset
from espnet_adapters.train.trainer import TrainConfig, Trainer
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.encoder import lower_states, upper_outputs, whole_encoder
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import iter_feats_scp, stack_features
from espnet_adapters.whisper.inputs import adapter_cut_layer, batch_inputs, encode, trim_encoder_outputs
from espnet_adapters.whisper.lora import LoraSpec, apply_lora, build_lora_config, encoder_cut_layer, target_regex

TRIM = 0.3
SENTENCES = ["नमस्ते दुनिया", "यह एक परीक्षण है", "फ़ाइल खोलें", "सहेजें और बंद करें", "नया फ़ोल्डर", "मदद"]


@pytest.fixture(scope="module")
def sets(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:  # noqa: F811
    root = tmp_path_factory.mktemp("enc_top")
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_dir)
    return {"train4": make_set(root, "train4", SENTENCES[:4], extractor, 1),
            "dev": make_set(root, "dev", SENTENCES[4:], extractor, 3)}


def _features(scp: Path) -> tuple[list[str], torch.Tensor, list[float]]:
    feats = dict(iter_feats_scp(scp, list(read_map(scp))))
    utts = list(feats)
    return utts, stack_features([feats[u] for u in utts]), [feats[u].shape[0] / 100 for u in utts]


def test_the_two_parts_are_whispers_encoder(tiny_dir: Path, sets: dict) -> None:  # noqa: F811
    model = WhisperForConditionalGeneration.from_pretrained(tiny_dir).eval()
    encoder = model.get_encoder()
    _, features, seconds = _features(sets["dev"][1])
    with torch.no_grad():
        whole = whole_encoder(encoder, features)
        torch.testing.assert_close(upper_outputs(encoder, lower_states(encoder, features, 1), 1), whole)
        # Without encoder_trim nothing is cut: the cut layer changes nothing.
        torch.testing.assert_close(encode(encoder, seconds, None, features=features, cut_layer=1), whole)
        cut_before = encode(encoder, seconds, TRIM, features=features, cut_layer=1)
        states = encode(encoder, seconds, TRIM, states=lower_states(encoder, features, 1), cut_layer=1)
        after = trim_encoder_outputs(whole, seconds, TRIM)
    torch.testing.assert_close(states, cut_before)
    assert cut_before.shape == after.shape and cut_before.shape[1] < 1500
    # Cut before the top layer, it attends to fewer frames: other outputs than cutting the whole encoder's.
    assert not torch.allclose(cut_before, after, atol=1e-3)
    with pytest.raises(ValueError, match="cut layer 3 outside 1..2"):
        lower_states(encoder, features, 3)


def test_lora_spec_adds_the_top_encoder_layers(tiny_dir: Path) -> None:  # noqa: F811
    model = WhisperForConditionalGeneration.from_pretrained(tiny_dir)
    spec = LoraSpec(r=4, lora_alpha=8, encoder_top=1)
    assert encoder_cut_layer(spec, 2) == 1 and encoder_cut_layer(LoraSpec(), 2) is None
    pattern = build_lora_config(spec, model).target_modules
    assert pattern == target_regex(spec, 2)
    peft = apply_lora(model, spec)
    adapted = sorted({n.split(".lora_A")[0] for n, _ in peft.named_parameters() if ".lora_A." in n})
    encoder = [n for n in adapted if ".encoder.layers." in n]
    assert encoder == ["base_model.model.model.encoder.layers.1.self_attn.q_proj",
                       "base_model.model.model.encoder.layers.1.self_attn.v_proj"]
    assert len(adapted) - len(encoder) == 2 * 2 * 2  # decoder: 2 layers x (self, cross) x (q, v)
    with pytest.raises(ValueError, match="encoder_top adds encoder layers to a decoder adapter"):
        LoraSpec(where="both", encoder_top=1)
    with pytest.raises(UserInputError, match="encoder_top 3, but the encoder has 2 layers"):
        build_lora_config(LoraSpec(encoder_top=3), model)


def test_cache_of_the_states_below_the_top(tiny_dir: Path, sets: dict, tmp_path: Path) -> None:  # noqa: F811
    scp = sets["dev"][1]
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny_dir), "--out_dir",
                               str(tmp_path / "low"), "--shard", "1", "--encoder_top", "1"]) == 0
    cache = EncoderCache(tmp_path / "low", encoder_fingerprint(str(tiny_dir), scp, 1), cut_layer=1)
    utts, features, _ = _features(scp)
    encoder = WhisperForConditionalGeneration.from_pretrained(tiny_dir).eval().get_encoder()
    with torch.no_grad():
        expected = lower_states(encoder, features, 1)
    cached = cache.get_batch(utts)
    torch.testing.assert_close(cached, expected, rtol=2e-3, atol=2e-3 * float(expected.abs().max()))  # float16
    assert json.loads((tmp_path / "low" / "fingerprint.json").read_text())["cut_layer"] == 1
    assert encoder_fingerprint(str(tiny_dir), scp, 1) != encoder_fingerprint(str(tiny_dir), scp)
    # Never read as the encoder's outputs, nor the other way round.
    with pytest.raises(UserInputError, match="holds the states below encoder layer 1, but the encoder's outputs"):
        EncoderCache(tmp_path / "low")
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny_dir), "--out_dir",
                               str(tmp_path / "out"), "--shard", "1"]) == 0
    with pytest.raises(UserInputError, match="holds the encoder's outputs, but the states below encoder layer 1"):
        EncoderCache(tmp_path / "out", cut_layer=1)
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny_dir), "--out_dir",
                               str(tmp_path / "bad"), "--shard", "1", "--encoder_top", "3"]) == 1


def test_trainer_and_decoders_see_one_encoder(tiny_dir: Path, sets: dict, tmp_path: Path) -> None:  # noqa: F811
    """The trainer's encoder outputs (lower states from the cache) == the decoders' (features, the adapter's cut)."""
    processor = WhisperProcessor.from_pretrained(tiny_dir)
    spec = LoraSpec(r=4, lora_alpha=8, encoder_top=1)
    model = apply_lora(WhisperForConditionalGeneration.from_pretrained(tiny_dir), spec)
    with torch.no_grad():  # a non-zero update, so that the top layer's adapter matters
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.3)
    dev_dir, scp = sets["dev"]
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny_dir), "--out_dir",
                               str(tmp_path / "low"), "--shard", "1", "--encoder_top", "1"]) == 0
    common = {"lang": "hi", "tokenizer": processor.tokenizer, "max_target_positions": 448,
              "model_source": str(tiny_dir)}
    dev = load_dataset(dev_dir, feats_scp=scp, encoder_cache=tmp_path / "low", cut_layer=1, **common)
    opts = DecodeOptions(max_new_tokens=4, encoder_trim=TRIM)
    trainer = Trainer(model, processor.tokenizer, dev, dev, TrainConfig(max_steps=1), tmp_path / "exp", lang="hi",
                      device=torch.device("cpu"), seed=1, signature={}, meta={}, decode_opts=opts, cut_layer=1)
    batch = dev.collate(list(range(len(dev))))
    model.eval()
    with torch.no_grad():
        trained = trainer._encode(batch)
        feats = dict(iter_feats_scp(scp, batch.utt_ids))
        items = [(utt, feats[utt], "hi") for utt in batch.utt_ids]
        decoded = batch_inputs(items, None, model=model, durations=batch.durations, encoder_trim=TRIM,
                               cut_layer=1)["encoder_outputs"]
        plain = batch_inputs(items, None, model=model, durations=batch.durations, encoder_trim=TRIM)["encoder_outputs"]
    torch.testing.assert_close(trained, decoded, rtol=2e-3, atol=2e-3 * float(decoded.abs().max()))
    assert not torch.allclose(plain, decoded, atol=1e-3)  # without the cut layer: another encoder
    with pytest.raises(ValueError, match="cut at layer 1, the adapter at None"):
        Trainer(model, processor.tokenizer, dev, dev, TrainConfig(max_steps=1), tmp_path / "exp2", lang="hi",
                device=torch.device("cpu"), seed=1, signature={}, meta={}, decode_opts=opts)


def test_train_lora_records_the_cut_and_decoders_honour_it(tiny_dir: Path, sets: dict, tmp_path: Path,  # noqa: F811
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caches = {}
    for name in ("train4", "dev"):
        caches[name] = tmp_path / f"low_{name}"
        assert cache_encoder.main(["--feats_scp", str(sets[name][1]), "--whisper_model", str(tiny_dir),
                                   "--out_dir", str(caches[name]), "--shard", "1", "--encoder_top", "1"]) == 0
    lora = write_yaml(tmp_path / "enc_top.yaml", {"r": 4, "lora_alpha": 8, "encoder_top": 1})
    cfg = write_yaml(tmp_path / "train.yaml", {"batch_size": 2, "max_steps": 2, "eval_every": 2, "lr": 0.01})
    out = tmp_path / "exp"
    args = [*cli_args(tiny_dir, sets, "train4", cfg, out, lora=lora), "--encoder_trim", str(TRIM)]
    # The encoder's outputs are not what this adapter trains on.
    outputs_cache = tmp_path / "outputs"
    assert cache_encoder.main(["--feats_scp", str(sets["train4"][1]), "--whisper_model", str(tiny_dir),
                               "--out_dir", str(outputs_cache), "--shard", "1"]) == 0
    with caplog.at_level(logging.ERROR):
        assert run_cli([*args, "--train_encoder_cache", str(outputs_cache)]) == 1
    assert "holds the encoder's outputs, but the states below encoder layer 1 are needed" in caplog.text
    assert run_cli([*args, "--train_encoder_cache", str(caches["train4"]),
                    "--dev_encoder_cache", str(caches["dev"])]) == 0
    adapter = out / "adapter"
    meta = json.loads((adapter / "lora_meta.json").read_text())
    assert meta["encoder_cut_layer"] == 1 and meta["encoder_top"] == 1 and meta["encoder_trim"] == TRIM
    assert adapter_cut_layer([adapter]) == 1
    weights = json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    assert "encoder\\.layers\\.(?:1)" in weights
    # whisper_decode: from features with the adapter's cut; not from the encoder-output cache (changed encoder)
    data = tmp_path / "data"
    data.mkdir()
    dev_dir, dev_scp = sets["dev"]
    write_map(data / "wav.scp", dict.fromkeys(read_map(dev_scp), "unused.wav"))
    write_map(data / "utt2lang", dict.fromkeys(read_map(dev_scp), "hi"))
    common = ["--data_dir", str(data), "--whisper_model", str(tiny_dir), "--max_new_tokens", "4",
              "--feats_scp", str(dev_scp), "--adapter_dir", str(adapter), "--encoder_trim", str(TRIM)]
    assert whisper_decode.main([*common, "--out_dir", str(tmp_path / "dec")]) == 0
    assert sorted(read_map(tmp_path / "dec" / "hyp", allow_empty_value=True)) == sorted(read_map(dev_scp))
    assert cache_encoder.main(["--feats_scp", str(dev_scp), "--whisper_model", str(tiny_dir),
                               "--out_dir", str(tmp_path / "dev_outputs"), "--shard", "1"]) == 0
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert whisper_decode.main([*common, "--encoder_cache", str(tmp_path / "dev_outputs"),
                                    "--out_dir", str(tmp_path / "dec_cache")]) == 1
    assert "the adapter changes encoder weights" in caplog.text
    # CTranslate2 runs the whole encoder on the window: it cannot cut before the top layer.
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert export_adapter.main(["--whisper_model", str(tiny_dir), "--adapter_dir", str(adapter),
                                    "--out_dir", str(tmp_path / "export")]) == 1
    assert "decode it with the hf backend" in caplog.text and not (tmp_path / "export").exists()
    # Adapters cut at different layers are not decoded together (routing).
    other = tmp_path / "other"
    other.mkdir()
    (other / "lora_meta.json").write_text(json.dumps({"encoder_cut_layer": None}))
    with pytest.raises(UserInputError, match="different encoder cut layers"):
        adapter_cut_layer([adapter, other])
