"""encoder_trim in the decoders: trimmed from the cache == trimmed from features, adapters decoded as trained.

A tiny random Whisper (test_encoder_cache.make_tiny_whisper) and four
synthetic utterances of 0.7-4.6 s.  The trainer trims its encoder outputs the
same way (test_train); here the decoders (whisper_decode, route_decode) and
train_lora's adapter metadata, which the decoders check.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperProcessor

from espnet_adapters.bin import cache_encoder, codeswitch_decode, route_decode, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.routing import decode as routing_decode
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, decode_rows
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import iter_feats_scp
from espnet_adapters.whisper.inputs import adapter_encoder_trim, batch_inputs, check_adapter_encoder_trim, kept_frames
from espnet_adapters.whisper.lora import META_FILE, LoraSpec
from espnet_adapters.whisper.model import load_whisper
from test_encoder_cache import tiny_with_feats
from test_routing import make_lang_adapter

CPU = torch.device("cpu")
TRIM = 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trim")
    tiny, feats, scp = tiny_with_feats(root, whisper_base_dir)
    assert cache_encoder.main(["--feats_scp", str(scp), "--whisper_model", str(tiny), "--out_dir",
                               str(root / "cache"), "--shard", "1"]) == 0
    data = root / "data"
    data.mkdir()
    write_map(data / "wav.scp", {utt: "unused.wav" for utt in feats})
    write_map(data / "utt2lang", dict(zip(feats, ["it", "hi", "it", "hi"])))
    paths = {"root": root, "tiny": tiny, "scp": scp, "cache": root / "cache", "data": data}
    for seed, lang in enumerate(("hi", "it"), start=10):  # decoder only: usable with the cache
        paths[f"dec_{lang}"] = make_lang_adapter(tiny, root / f"lora_dec_{lang}", lang, LoraSpec(r=4, lora_alpha=8),
                                                 seed)
    paths["both_it"] = make_lang_adapter(tiny, root / "lora_both_it", "it", LoraSpec(r=4, lora_alpha=8, where="both"),
                                         3)
    return paths


def _set_trim(adapter_dir: Path, trim: float | None) -> None:
    meta = json.loads((adapter_dir / META_FILE).read_text())
    meta["encoder_trim"] = trim
    (adapter_dir / META_FILE).write_text(json.dumps(meta))


def test_trimmed_cache_decodes_like_trimmed_features(setup: dict[str, Path]) -> None:
    """Library level: the same frames kept, the same outputs up to float16, the same tokens."""
    model, processor = load_whisper(str(setup["tiny"]), CPU)
    feats = dict(iter_feats_scp(setup["scp"], list(read_map(setup["scp"]))))
    cache = EncoderCache(setup["cache"], encoder_fingerprint(str(setup["tiny"]), setup["scp"]))
    utts = list(feats)
    durations = [feats[utt].shape[0] / 100 for utt in utts]
    batch = [(utt, feats[utt], "it") for utt in utts]
    from_feats = batch_inputs(batch, None, model=model, durations=durations, encoder_trim=TRIM)["encoder_outputs"]
    from_cache = batch_inputs(batch, cache, model=model, durations=durations, encoder_trim=TRIM)["encoder_outputs"]
    kept = kept_frames(durations, TRIM)
    assert from_feats.shape == from_cache.shape == (4, kept, 64) and kept < 1500
    assert kept == int(np.ceil((max(durations) + TRIM) * 50))
    scale = float(from_feats.abs().max())
    torch.testing.assert_close(from_cache, from_feats, rtol=1e-3, atol=1e-3 * scale)  # float16 storage
    opts = DecodeOptions(max_new_tokens=8, encoder_trim=TRIM)
    rows = {name: decode_rows(model, processor.tokenizer, encoder_outputs=outputs, languages=["it"] * 4, opts=opts,
                              durations=durations)
            for name, outputs in (("feats", from_feats), ("cache", from_cache))}
    same = [a.tokens == b.tokens for a, b in zip(rows["feats"], rows["cache"])]
    assert sum(same) >= len(same) - 1 and any(row.tokens for row in rows["feats"])  # a fp16 near-tie may flip one
    # Trimming changes what the decoder sees: the whole window decodes otherwise.
    whole = batch_inputs(batch, None, model=model, durations=durations, encoder_trim=None)
    untrimmed = decode_rows(model, processor.tokenizer, **whole, languages=["it"] * 4,
                            opts=DecodeOptions(max_new_tokens=8), durations=durations)
    assert [row.tokens for row in untrimmed] != [row.tokens for row in rows["feats"]]


def _spy_shapes(monkeypatch: pytest.MonkeyPatch, module: object) -> list[tuple[int, ...]]:
    """Records the shape of the encoder outputs (or features) each decode_features call of ``module`` gets."""
    shapes: list[tuple[int, ...]] = []
    real = module.decode_features  # type: ignore[attr-defined]

    def spy(*args: object, **kwargs: object) -> list[str]:
        tensor = kwargs.get("encoder_outputs")
        tensor = kwargs["input_features"] if tensor is None else tensor
        shapes.append(tuple(tensor.shape))  # type: ignore[union-attr]
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "decode_features", spy)
    return shapes


def test_whisper_decode_trims_from_cache_and_features_alike(setup: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = _spy_shapes(monkeypatch, whisper_decode)
    common = ["--data_dir", str(setup["data"]), "--whisper_model", str(setup["tiny"]), "--max_new_tokens", "8",
              "--feats_scp", str(setup["scp"]), "--batch_size", "2", "--encoder_trim", str(TRIM)]
    hyps = {}
    for name, extra in (("feats", []), ("cache", ["--encoder_cache", str(setup["cache"])])):
        assert whisper_decode.main([*common, *extra, "--out_dir", str(tmp_path / name)]) == 0
        hyps[name] = read_map(tmp_path / name / "hyp", allow_empty_value=True)
        stats = json.loads((tmp_path / name / "stats.json").read_text())
        assert stats["options"]["encoder_trim"] == TRIM and stats["durations_from"] == "frames"
    assert sum(hyps["feats"][utt] == hyps["cache"][utt] for utt in hyps["feats"]) >= len(hyps["feats"]) - 1
    # Two languages, batches of 2 sorted by duration: (utt0 0.7 s, utt2 3.3 s) in it, (utt1, utt3) in hi;
    # each batch keeps its longest utterance's frames plus the margin, from either input.
    frames = {utt: int(shape.split(",")[0]) for utt, shape in read_map(setup["scp"].with_name("feats_shape")).items()}
    expected = sorted(kept_frames([frames[a] / 100, frames[b] / 100], TRIM) for a, b in (("utt1", "utt3"),
                                                                                          ("utt0", "utt2")))
    assert sorted(shape[1] for shape in shapes[:2]) == expected and sorted(s[1] for s in shapes[2:]) == expected
    # Whisper's own language detection (--lang_mode auto) reads the same trimmed frames
    assert whisper_decode.main([*common, "--lang_mode", "auto", "--out_dir", str(tmp_path / "auto")]) == 0
    assert sorted(read_map(tmp_path / "auto" / "hyp_lang")) == sorted(hyps["feats"])
    assert all(shape[1] < 1500 for shape in shapes[4:]) and len(shapes) == 6


def test_an_adapter_is_decoded_with_its_training_trim(setup: dict[str, Path], tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    adapter = setup["dec_it"]
    assert adapter_encoder_trim(adapter) is None  # no key: trained on the whole window
    _set_trim(adapter, TRIM)
    try:
        assert adapter_encoder_trim(adapter) == TRIM
        common = ["--data_dir", str(setup["data"]), "--whisper_model", str(setup["tiny"]), "--max_new_tokens", "4",
                  "--feats_scp", str(setup["scp"]), "--adapter_dir", str(adapter)]
        with caplog.at_level(logging.ERROR):
            assert whisper_decode.main([*common, "--out_dir", str(tmp_path / "none")]) == 1
        assert f"{adapter}: the adapter was trained with encoder_trim 0.5 s (lora_meta.json)" in caplog.text
        assert "--encoder_trim 0.5" in caplog.text and not (tmp_path / "none").exists()
        assert whisper_decode.main([*common, "--encoder_trim", "1", "--out_dir", str(tmp_path / "other")]) == 1
        config = tmp_path / "trim.yaml"
        config.write_text(f"encoder_trim: {TRIM}\n")
        assert whisper_decode.main([*common, "--decode_config", str(config), "--out_dir", str(tmp_path / "ok")]) == 0
        # route_decode and codeswitch_decode check every adapter, before loading anything
        route = ["--data_dir", str(setup["data"]), "--whisper_model", str(setup["tiny"]), "--strategy", "oracle",
                 "--feats_scp", str(setup["scp"]), "--adapter", f"it={adapter}", "--adapter", f"hi={setup['dec_hi']}",
                 "--out_dir", str(tmp_path / "route")]
        with pytest.raises(UserInputError, match=rf"{setup['dec_hi']}: the adapter was trained with encoder_trim "
                                                 r"none \(the whole 30 s window\)"):
            route_decode.run(route_decode.get_parser().parse_args([*route, "--encoder_trim", str(TRIM)]))
        with pytest.raises(UserInputError, match=rf"{adapter}: the adapter was trained with encoder_trim 0.5 s"):
            route_decode.run(route_decode.get_parser().parse_args(route))
        switch = ["--data_dir", str(tmp_path), "--lid_dir", str(tmp_path / "no_lid"), "--out_dir", str(tmp_path / "cs"),
                  "--adapter", f"it={adapter}"]
        with pytest.raises(UserInputError, match=rf"{adapter}: the adapter was trained with encoder_trim 0.5 s"):
            codeswitch_decode.run(codeswitch_decode.get_parser().parse_args(switch))
    finally:
        _set_trim(adapter, None)
    check_adapter_encoder_trim([adapter], None)
    (adapter / META_FILE).write_text('{"encoder_trim": "half"}')
    with pytest.raises(UserInputError, match=r"encoder_trim must be a number of seconds or null"):
        adapter_encoder_trim(adapter)
    (adapter / META_FILE).write_text("{}")


def test_route_decode_trims_under_the_routing_weights(setup: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle routing to an encoder+decoder adapter, trimmed == whisper_decode with that adapter, trimmed.

    From features the encoder runs under the routing weights (the adapter changes it); from the cache
    (decoder-only adapters) the cached outputs are cut the same way.
    """
    both = setup["both_it"]
    adapters = (both, setup["dec_hi"], setup["dec_it"])
    for adapter in adapters:
        _set_trim(adapter, TRIM)
    try:
        _route_trims(setup, tmp_path, monkeypatch)
    finally:
        for adapter in adapters:
            _set_trim(adapter, None)


def _route_trims(setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    both = setup["both_it"]
    data = tmp_path / "data"
    data.mkdir()
    write_map(data / "wav.scp", read_map(setup["data"] / "wav.scp"))
    write_map(data / "utt2lang", dict.fromkeys(read_map(setup["data"] / "wav.scp"), "it"))
    common = ["--data_dir", str(data), "--whisper_model", str(setup["tiny"]), "--max_new_tokens", "6",
              "--feats_scp", str(setup["scp"]), "--batch_size", "3"]
    trimmed = [*common, "--encoder_trim", str(TRIM)]
    assert route_decode.main([*trimmed, "--strategy", "oracle", "--adapter", f"it={both}",
                              "--out_dir", str(tmp_path / "oracle")]) == 0
    assert whisper_decode.main([*trimmed, "--adapter_dir", str(both), "--out_dir", str(tmp_path / "plain")]) == 0
    for name in ("hyp", "hyp_lang"):
        assert (tmp_path / "oracle" / name).read_text() == (tmp_path / "plain" / name).read_text()

    shapes = _spy_shapes(monkeypatch, routing_decode)
    decoder_only = [arg for lang in ("hi", "it") for arg in ("--adapter", f"{lang}={setup[f'dec_{lang}']}")]
    hyps = {}
    for name, extra in (("feats", []), ("cache", ["--encoder_cache", str(setup["cache"])])):
        assert route_decode.main([*trimmed, *extra, "--strategy", "oracle", *decoder_only,
                                  "--out_dir", str(tmp_path / f"route_{name}")]) == 0
        hyps[name] = read_map(tmp_path / f"route_{name}" / "hyp", allow_empty_value=True)
    assert sum(hyps["feats"][utt] == hyps["cache"][utt] for utt in hyps["feats"]) >= len(hyps["feats"]) - 1
    assert len(shapes) == 4 and all(len(shape) == 3 and shape[1] < 1500 for shape in shapes)  # (B, kept, d)

    _set_trim(both, None)  # the same adapter on the whole window: the encoder's other frames change the hyps
    assert whisper_decode.main([*common, "--adapter_dir", str(both), "--out_dir", str(tmp_path / "untrimmed")]) == 0
    assert (tmp_path / "untrimmed" / "hyp").read_text() != (tmp_path / "plain" / "hyp").read_text()


def test_train_lora_records_the_decoding_and_retrains_when_it_changes(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    from test_train import SENTENCES, make_set, run_cli, write_yaml

    extractor = WhisperProcessor.from_pretrained(setup["tiny"]).feature_extractor
    train_dir, train_feats = make_set(tmp_path, "train", SENTENCES[:4], extractor, 1)
    dev_dir, dev_feats = make_set(tmp_path, "dev", SENTENCES[4:], extractor, 3)
    cfg = write_yaml(tmp_path / "train.yaml", {"batch_size": 2, "lr": 0.01, "warmup_steps": 0, "max_steps": 4,
                                               "eval_every": 2, "save_every": 4, "dev_batch_size": 2})
    decode = tmp_path / "decode.yaml"
    decode.write_text(f"max_new_tokens: 6\nencoder_trim: {TRIM}\n")
    out = tmp_path / "exp"
    args = ["--lang", "hi", "--train_dir", str(train_dir), "--train_feats", str(train_feats), "--dev_dir", str(dev_dir),
            "--dev_feats", str(dev_feats), "--whisper_model", str(setup["tiny"]), "--train_config", str(cfg),
            "--lora_config", str(Path(__file__).resolve().parents[2] / "conf/lora/r8_qv_dec.yaml"),
            "--out_dir", str(out), "--num_threads", "1", "--decode_config", str(decode), "--max_tokens_base", "4"]
    assert run_cli(args) == 0
    as_json = DecodeOptions(max_new_tokens=6, encoder_trim=TRIM, max_tokens_base=4, batch_size=2).as_dict()
    expected = json.loads(json.dumps(as_json))  # the signature and the meta are JSON
    signature = json.loads((out / "train.done").read_text())
    assert signature["decode"] == expected
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["adapter"]  # it beat the base model's dev WER (step 0), so it was installed
    meta = json.loads((out / "adapter" / META_FILE).read_text())
    assert meta["encoder_trim"] == TRIM and meta["dev_decode"] == expected
    assert meta["decode_config"] == str(decode) and adapter_encoder_trim(out / "adapter") == TRIM
    # the decoders take it with the trim it was trained with, and only so
    decode_args = ["--data_dir", str(dev_dir), "--feats_scp", str(dev_feats), "--whisper_model", str(setup["tiny"]),
                   "--adapter_dir", str(out / "adapter"), "--max_new_tokens", "6"]
    assert whisper_decode.main([*decode_args, "--out_dir", str(tmp_path / "whole")]) == 1
    assert whisper_decode.main([*decode_args, "--decode_config", str(decode),
                                "--out_dir", str(tmp_path / "trimmed")]) == 0
    # the same command: nothing to do; another decoding rule: trained again
    assert run_cli(args) == 0
    assert "starting over" not in (out / "train.log").read_text()
    assert run_cli([*args, "--encoder_trim", "none"]) == 0
    assert "starting over" in (out / "train.log").read_text()
    assert json.loads((out / "train.done").read_text())["decode"]["encoder_trim"] is None
