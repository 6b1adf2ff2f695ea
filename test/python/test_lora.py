"""LoRA presets on a tiny random Whisper: parameter counts, what is frozen, config errors.

The tiny model has Whisper base's vocabulary and special tokens (so labels from
the real tokenizer fit) but d_model 64 and 2+2 layers: built in a blink, no
download.  ``tiny_whisper_config`` is shared with ``test_train.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from espnet_adapters.utils.config import load_yaml_config
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec, apply_lora, build_lora_config, count_parameters, touches_encoder

CONF_LORA = Path(__file__).resolve().parents[2] / "conf" / "lora"


def tiny_whisper_config(base_dir: Path) -> WhisperConfig:
    """Whisper base's config (vocab, special ids, 80 mels, 1500/448 positions), shrunk."""
    config = WhisperConfig.from_pretrained(base_dir)
    for stack in ("encoder", "decoder"):
        setattr(config, f"{stack}_layers", 2)
        setattr(config, f"{stack}_attention_heads", 4)
        setattr(config, f"{stack}_ffn_dim", 128)
    config.d_model = 64
    # The output layer is the tied embedding: with the usual init (std 0.02) and
    # d_model 64 the logits span about +-1, and a few LoRA steps could barely
    # move a 51865-way loss.  A wider init lets the training tests overfit.
    config.init_std = 0.3
    return config


@pytest.fixture(scope="module")
def tiny_config(whisper_base_dir: Path) -> WhisperConfig:
    return tiny_whisper_config(whisper_base_dir)


def tiny_model(config: WhisperConfig) -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config)


def expected_lora_params(spec: LoraSpec, config: WhisperConfig) -> int:
    """r * (in + out) per adapted matrix, counted from the config, not from the model."""
    d, r = config.d_model, spec.r
    shapes = {"q_proj": (d, d), "k_proj": (d, d), "v_proj": (d, d), "out_proj": (d, d)}
    total = 0
    for stack in ("encoder", "decoder"):
        if spec.where not in (stack, "both"):
            continue
        ffn = getattr(config, f"{stack}_ffn_dim")
        per_layer = 0
        for name in spec.target_modules:
            if name in shapes:
                # the decoder has two attention blocks (self_attn, encoder_attn), the encoder one
                per_layer += (2 if stack == "decoder" else 1) * r * sum(shapes[name])
            else:
                per_layer += r * (d + ffn)  # fc1: d -> ffn, fc2: ffn -> d
        layers = getattr(config, f"{stack}_layers") if spec.layers is None else len(spec.layers)
        total += layers * per_layer
    return total


@pytest.mark.parametrize("preset", ["r8_qv_dec", "r32_qv_dec", "r32_qv_both", "r32_qvko_fc_dec"])
def test_parameter_counts_match_config(preset: str, tiny_config: WhisperConfig) -> None:
    spec = LoraSpec.from_yaml(CONF_LORA / f"{preset}.yaml")
    model = tiny_model(tiny_config)
    base_total = sum(p.numel() for p in model.parameters())
    peft_model = apply_lora(model, spec)
    trainable, total = count_parameters(peft_model)
    assert trainable == expected_lora_params(spec, tiny_config) > 0
    assert total == base_total + trainable
    trainable_names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable_names)
    assert any(".encoder." in n for n in trainable_names) == touches_encoder(spec)
    assert peft_model.peft_config["default"].task_type is None  # see the module doc of lora.py


def test_every_preset_loads_with_alpha_twice_r() -> None:
    presets = sorted(CONF_LORA.glob("*.yaml"))
    assert {p.stem for p in presets} >= {"r8_qv_dec", "r16_qv_dec", "r32_qv_dec", "r64_qv_dec", "r32_qv_both"}
    for path in presets:
        spec = LoraSpec.from_yaml(path)
        assert spec.lora_alpha == 2 * spec.r and spec.source == str(path)


def test_decoder_targets_cover_self_and_cross_attention(tiny_config: WhisperConfig) -> None:
    model = tiny_model(tiny_config)
    spec = LoraSpec(r=4, lora_alpha=8, target_modules=("q_proj",), layers=(1,))
    peft_model = apply_lora(model, spec)
    adapted = sorted({n.split(".lora_")[0] for n, p in peft_model.named_parameters() if p.requires_grad})
    assert adapted == [
        "base_model.model.model.decoder.layers.1.encoder_attn.q_proj",
        "base_model.model.model.decoder.layers.1.self_attn.q_proj",
    ]
    assert count_parameters(peft_model)[0] == expected_lora_params(spec, tiny_config)


def test_lora_forward_takes_input_features(tiny_config: WhisperConfig) -> None:
    """The SEQ_2_SEQ_LM trap: the wrapped model must still accept Whisper's inputs."""
    peft_model = apply_lora(tiny_model(tiny_config), LoraSpec(r=4, lora_alpha=8))
    out = peft_model(
        input_features=torch.zeros(1, 80, 3000),
        decoder_input_ids=torch.tensor([[50258, 50276]]),
        labels=torch.tensor([[50276, 50359]]),
    )
    assert torch.isfinite(out.loss)


def test_target_matching_nothing_names_the_spec_file(tmp_path: Path, tiny_config: WhisperConfig) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("r: 8\nlora_alpha: 16\ntarget_modules: [query]\nwhere: decoder\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.yaml: target_modules \['query'\] match no module"):
        apply_lora(tiny_model(tiny_config), LoraSpec.from_yaml(path))
    path.write_text("r: 8\nlora_alpha: 16\nlayers: [0, 7]\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"bad\.yaml: layers \[7\] do not exist: the decoder has 2 layers"):
        build_lora_config(LoraSpec.from_yaml(path), tiny_model(tiny_config))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rank: 8\n", r"unknown key\(s\) rank"),
        ("where: middle\n", r"where must be one of"),
        ("r: eight\n", r"r: expected int"),
        ("target_modules: ['q.*']\n", r"not patterns"),
        ("- r\n", r"expected a mapping"),
    ],
)
def test_bad_lora_yaml(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match=rf"spec\.yaml: .*{message}"):
        load_yaml_config(path, LoraSpec)
