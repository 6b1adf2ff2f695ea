"""Decoding with a peft LoRA adapter: upstream loading, merged == unmerged, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.bin import cache_encoder, whisper_decode
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import decode_features
from espnet_adapters.whisper.features import stack_features
from espnet_adapters.whisper.model import adapter_touches_encoder, load_whisper
from test_encoder_cache import GREEDY, make_tiny_whisper, synthetic_feats, write_feats

DECODER_QV = r".*decoder.*\.(q_proj|v_proj)"
CPU = torch.device("cpu")


def make_adapter(base_dir: Path, out_dir: Path, target_modules: str | list[str]) -> Path:
    """A LoRA adapter (r=4) whose lora_B is perturbed, so it is not the no-op peft initialises."""
    base = WhisperForConditionalGeneration.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=target_modules))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, whisper_base_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapter")
    tiny = make_tiny_whisper(root / "tiny", whisper_base_dir)
    feats = synthetic_feats(WhisperProcessor.from_pretrained(tiny).feature_extractor)
    return {
        "root": root, "tiny": tiny, "scp": write_feats(root / "feats", feats),
        "decoder": make_adapter(tiny, root / "lora_dec", DECODER_QV),
        "encoder": make_adapter(tiny, root / "lora_all", ["q_proj", "v_proj"]),  # matches the encoder too
        "wide": make_adapter(make_tiny_whisper(root / "tiny96", whisper_base_dir, d_model=96), root / "lora96", DECODER_QV),
    }


def _texts(model: torch.nn.Module, processor: WhisperProcessor, features: torch.Tensor) -> list[str]:
    return decode_features(model, processor.tokenizer, input_features=features,
                           languages=["it"] * len(features), opts=GREEDY)


def test_merged_and_unmerged_adapters_decode_identically_and_differ_from_base(setup: dict[str, Path]) -> None:
    processor = WhisperProcessor.from_pretrained(setup["tiny"])
    features = stack_features(list(synthetic_feats(processor.feature_extractor).values()))
    upstream = PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(setup["tiny"]), setup["decoder"])
    assert isinstance(upstream, PeftModel)
    unmerged, _ = load_whisper(str(setup["tiny"]), CPU, setup["decoder"])
    merged, _ = load_whisper(str(setup["tiny"]), CPU, setup["decoder"], merge=True)
    base, _ = load_whisper(str(setup["tiny"]), CPU)
    assert isinstance(unmerged, PeftModel) and not isinstance(merged, PeftModel)
    with_adapter = _texts(unmerged, processor, features)
    assert _texts(upstream.eval(), processor, features) == with_adapter
    assert _texts(merged, processor, features) == with_adapter
    assert _texts(base, processor, features) != with_adapter  # the adapter is really applied


def test_adapter_on_encoder_cannot_use_the_encoder_cache(setup: dict[str, Path], tmp_path: Path) -> None:
    assert adapter_touches_encoder(setup["encoder"]) and not adapter_touches_encoder(setup["decoder"])
    data = tmp_path / "data"
    data.mkdir()
    utts = list(read_map(setup["scp"]))
    write_map(data / "wav.scp", {utt: "unused.wav" for utt in utts})
    write_map(data / "utt2lang", dict.fromkeys(utts, "it"))
    cache = tmp_path / "cache"
    assert cache_encoder.main(["--feats_scp", str(setup["scp"]), "--whisper_model", str(setup["tiny"]),
                               "--out_dir", str(cache), "--shard", "1"]) == 0
    common = ["--data_dir", str(data), "--whisper_model", str(setup["tiny"]), "--encoder_cache", str(cache),
              "--max_new_tokens", "8"]
    args = whisper_decode.get_parser().parse_args([*common, "--adapter_dir", str(setup["encoder"]), "--out_dir", "x"])
    with pytest.raises(UserInputError, match=rf"{setup['encoder']}: the adapter changes encoder weights"):
        whisper_decode.run(args)
    # A decoder-only adapter decodes from the cache, merged, and records it.
    out = tmp_path / "out"
    assert whisper_decode.main([*common, "--adapter_dir", str(setup["decoder"]), "--merge_adapter", "true",
                                "--out_dir", str(out)]) == 0
    stats = (out / "stats.json").read_text()
    assert f'"adapter_dir": "{setup["decoder"]}"' in stats and '"merge_adapter": true' in stats
    assert sorted(read_map(out / "hyp", allow_empty_value=True)) == sorted(utts)


def test_adapter_for_another_model_size_is_a_clear_error(setup: dict[str, Path]) -> None:
    with pytest.raises(UserInputError, match=rf"{setup['wide']}: adapter does not fit the base model"):
        load_whisper(str(setup["tiny"]), CPU, setup["wide"])
    with pytest.raises(UserInputError, match=r"no adapter_config.json"):
        load_whisper(str(setup["tiny"]), CPU, setup["root"])
