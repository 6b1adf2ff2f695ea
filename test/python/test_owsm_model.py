"""OWSM through ESPnet on a tiny random model built at test time (conf/owsm/tiny_ebf.yaml, shrunk).

Pack round trip through espnet_model_zoo offline (zip and Hugging Face cache);
the generated LoRA train config trains exactly the LoRA parameters (checked
through ESPnet's own trainer set-up); an adapter-only checkpoint on the base
decodes exactly as ESPnet's merged ``save_strategy: all`` model does, while
ESPnet's own loading of the adapter-only checkpoint gives something else (the
random-base trap); bad packs and mismatched adapters are clear errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet_adapters.bin import owsm_decode, owsm_lora_config
from espnet_adapters.data.kaldi import read_map, write_data_dir
from espnet_adapters.owsm.adapter_config import lora_train_config
from espnet_adapters.owsm.build import attach_lora, init_model, lora_state, pack_model, s2t_task
from espnet_adapters.owsm.data import data_args, make_s2t_dir
from espnet_adapters.owsm.decode import DecodeOptions, load_speech2text, transcribe
from espnet_adapters.owsm.model import fetch_owsm
from espnet_adapters.owsm.tokens import train_bpe, write_token_list
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec

REPO = Path(__file__).resolve().parents[2]
SENTENCES = ["यह एक परीक्षण है", "फ़ाइल सहेजें", "apri il file", "il documento è vuoto", "नया दस्तावेज़", "chiudi la finestra"]
OPTIONS = DecodeOptions(beam_size=2, maxlenratio=0.2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random tiny OWSM-architecture model packed like a released one."""
    root = tmp_path_factory.mktemp("owsm")
    tokens = train_bpe(SENTENCES * 5, root / "bpe.model", 1600)
    write_token_list(tokens, root / "tokens.txt")
    rng = np.random.default_rng(0)
    mean, var = rng.normal(0, 1, 80), rng.uniform(0.5, 2, 80)
    np.savez(root / "feats_stats.npz", count=np.array(1000), sum=mean * 1000, sum_square=(var + mean**2) * 1000)
    preset = yaml.safe_load((REPO / "conf/owsm/tiny_ebf.yaml").read_text())
    preset["preprocessor_conf"]["speech_length"] = 2
    preset["encoder_conf"]["num_blocks"] = 1
    (root / "preset.yaml").write_text(yaml.safe_dump(preset))
    with contextlib.chdir(root):  # relative paths, as in a recipe dir
        config, weights = init_model(Path("preset.yaml"), Path("tokens.txt"), Path("bpe.model"),
                                     Path("feats_stats.npz"), Path("exp"))
    pack = pack_model(root, config, weights, [Path("bpe.model"), Path("feats_stats.npz")], root / "tiny.zip")
    return {"root": root, "pack": pack}


def _lora_config(tiny: dict[str, Path], spec_file: str) -> tuple[dict, LoraSpec]:
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    spec = LoraSpec.from_yaml(REPO / "conf/lora" / spec_file)
    return lora_train_config(model.load_config(), spec, {"max_epoch": 1, "batch_size": 2}), spec


def test_zip_and_hugging_face_cache_round_trip_offline(tiny: dict[str, Path], monkeypatch) -> None:
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    assert model.config.is_file() and model.model_file.is_file()
    state = torch.load(model.model_file, map_location="cpu", weights_only=True)
    assert state.keys() == torch.load(tiny["root"] / "exp" / "init.pth", weights_only=True).keys()
    # The same pack as a Hugging Face cache entry: models--<org>--<name>/{refs/main,snapshots/<sha>/}.
    hub = tiny["root"] / "hub"
    snapshot = hub / "models--espnet--owsm_tiny_test" / "snapshots" / ("0" * 40)
    with zipfile.ZipFile(tiny["pack"]) as archive:
        archive.extractall(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = fetch_owsm("espnet/owsm_tiny_test", hub)
    assert cached.model_file == snapshot / model.model_file.relative_to(model.model_file.parents[1])
    assert yaml.safe_load(cached.config.read_text())["bpemodel"] == str(snapshot / "bpe.model")


@pytest.mark.parametrize("preset", ["conf/owsm/lora_train.yaml", "test/conf/owsm_lora_smoke.yaml"])
def test_shipped_train_presets_make_valid_configs(tiny: dict[str, Path], preset: str) -> None:
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    settings = yaml.safe_load((REPO / preset).read_text())
    config = lora_train_config(model.load_config(), LoraSpec.from_yaml(REPO / "conf/lora/r32_qv_dec.yaml"), settings)
    assert all(config[key] == value for key, value in settings.items())
    with pytest.raises(UserInputError, match=r"keys \['encoder_conf'\] are not training settings"):
        lora_train_config(model.load_config(), LoraSpec.from_yaml(REPO / "conf/lora/r32_qv_dec.yaml"),
                          {**settings, "encoder_conf": {}})


def test_bad_packs_are_clear_errors(tiny: dict[str, Path]) -> None:
    root = tiny["root"]
    with zipfile.ZipFile(tiny["pack"]) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, drop, message in (("no_meta.zip", "meta.yaml", "no meta.yaml"),
                                ("no_model.zip", "exp/init.pth", "does not hold: s2t_model_file=exp/init.pth")):
        with zipfile.ZipFile(root / name, "w") as bad:
            for member, data in members.items():
                if member != drop:
                    bad.writestr(member, data)
        with pytest.raises(UserInputError, match=re.escape(message)):
            fetch_owsm(str(root / name), root / "cache_bad")
    (root / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="not a readable zip"):
        fetch_owsm(str(root / "junk.zip"), root / "cache_bad")


def test_generated_config_trains_only_lora(tiny: dict[str, Path], caplog) -> None:
    config, spec = _lora_config(tiny, "r8_qv_dec.yaml")
    targets = config["adapter_conf"]["target_modules"]
    assert len(targets) == 2 * 2 * 2  # q, v x self/src attention x 2 decoder layers
    # ESPnet's own trainer set-up (build, freeze_param, create_adapter), stopped before training.
    path = tiny["root"] / "lora_r8.yaml"
    path.write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.INFO):
        s2t_task().main(cmd=["--config", str(path), "--dry_run", "true", "--output_dir", str(tiny["root"] / "dry")])
    summary = re.search(r"Total Number of model parameters: ([\d.]+\s*\w?).*?Number of trainable parameters: ([\d.]+\s*\w?)",
                        caplog.text, re.S)
    assert summary, caplog.text[-2000:]
    from espnet2.torch_utils.model_summary import get_human_readable_count

    d_model = 128
    assert summary.group(2).strip() == get_human_readable_count(len(targets) * spec.r * 2 * d_model).strip()


@pytest.fixture(scope="module")
def adapter(tiny: dict[str, Path]) -> Path:
    """A trained-looking rank-8 q/v decoder adapter of the tiny model: random, non-zero A and B."""
    config, _ = _lora_config(tiny, "r8_qv_dec.yaml")
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    base = load_speech2text(model, "hi", None, OPTIONS)
    s2t_task()
    from espnet2.layers.create_adapter import create_adapter

    create_adapter(base.s2t_model, "lora", config["adapter_conf"])
    torch.manual_seed(3)
    weights = {key: torch.randn_like(value) * 0.5 for key, value in lora_state(base.s2t_model.state_dict()).items()}
    adapter_dir = tiny["root"] / "adapter"
    adapter_dir.mkdir()
    torch.save(weights, adapter_dir / "adapter.pth")
    (adapter_dir / "adapter.yaml").write_text(yaml.safe_dump(
        {"base_model": model.name, "adapter_conf": config["adapter_conf"], "checkpoint": "adapter.pth"}))
    return adapter_dir


def test_adapter_on_base_decodes_as_the_merged_model(tiny: dict[str, Path], adapter: Path) -> None:
    config, _ = _lora_config(tiny, "r8_qv_dec.yaml")
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    audio = np.random.default_rng(1).normal(0, 0.1, 24000).astype(np.float32)
    adapter_dir = adapter
    ours = load_speech2text(model, "hi", adapter_dir, OPTIONS)
    plain = load_speech2text(model, "hi", None, OPTIONS)
    # ESPnet's save_strategy "all": the merged weights and the LoRA tensors, loaded by ESPnet itself.
    all_file = tiny["root"] / "all.pth"
    torch.save(ours.s2t_model.state_dict(), all_file)
    config_file = tiny["root"] / "lora_config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    from espnet2.bin.s2t_inference import Speech2Text

    def espnet(model_file: Path) -> Speech2Text:
        return Speech2Text(s2t_train_config=str(config_file), s2t_model_file=str(model_file), beam_size=2,
                           maxlenratio=0.2, lang_sym="<hin>")

    merged = espnet(all_file)
    for name, weight in merged.s2t_model.state_dict().items():
        torch.testing.assert_close(weight, ours.s2t_model.state_dict()[name], rtol=0, atol=0)
    with torch.no_grad():
        hyp = ours(audio)[0][2]
        assert hyp == merged(audio)[0][2]
        assert hyp != plain(audio)[0][2]  # the adapter changes the output
        # The trap this avoids: ESPnet loading the adapter-only checkpoint keeps a random base.
        trap = espnet(adapter_dir / "adapter.pth")
        assert not torch.equal(trap.s2t_model.decoder.embed[0].weight, ours.s2t_model.decoder.embed[0].weight)
    assert isinstance(transcribe(ours, audio), str)


def test_mismatched_adapter_is_a_clear_error(tiny: dict[str, Path], adapter: Path) -> None:
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    config, _ = _lora_config(tiny, "r16_qv_dec.yaml")  # rank 16 conf ...
    adapter_dir = tiny["root"] / "adapter_bad"
    adapter_dir.mkdir()
    shutil.copy(adapter / "adapter.pth", adapter_dir / "adapter.pth")  # ... rank 8 weights
    meta = {"base_model": model.name, "adapter_conf": config["adapter_conf"], "checkpoint": "adapter.pth"}
    (adapter_dir / "adapter.yaml").write_text(yaml.safe_dump(meta))
    speech2text = load_speech2text(model, "hi", None, OPTIONS)
    with pytest.raises(UserInputError, match="do not fit"):
        attach_lora(speech2text.s2t_model, config["adapter_conf"], adapter_dir / "adapter.pth")
    meta["base_model"] = "espnet/owsm_v3.1_ebf_base"
    (adapter_dir / "adapter.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(UserInputError, match="trained on base model 'espnet/owsm_v3.1_ebf_base'"):
        load_speech2text(model, "hi", adapter_dir, OPTIONS)


def test_decode_entry_point_writes_hyps_per_job(tiny: dict[str, Path], adapter: Path, caplog) -> None:
    data = tiny["root"] / "data"
    rng = np.random.default_rng(2)
    wavs = {}
    for utt in ("hi_m1-u1", "it_f1-u2", "it_f1-u3"):
        wavs[utt] = str(tiny["root"] / f"{utt}.wav")
        soundfile.write(wavs[utt], rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    write_data_dir(data, wav_scp=wavs, text={u: "x" for u in wavs}, utt2spk={u: u.split("-")[0] for u in wavs},
                   utt2lang={u: u[:2] for u in wavs})
    (tiny["root"] / "keys.1").write_text("hi_m1-u1\nit_f1-u3\n")
    out = tiny["root"] / "decode"
    common = ["--data_dir", str(data), "--owsm_model", str(tiny["pack"]), "--owsm_cache", str(tiny["root"] / "cache"),
              "--beam_size", "1", "--maxlenratio", "0.2"]
    assert owsm_decode.main([*common, "--keys", str(tiny["root"] / "keys.1"), "--out_dir", str(out),
                             "--adapter_dir", str(adapter)]) == 0
    assert list(read_map(out / "hyp", allow_empty_value=True)) == ["hi_m1-u1", "it_f1-u3"]
    assert read_map(out / "hyp_lang") == {"hi_m1-u1": "hi", "it_f1-u3": "it"}
    assert json.loads((out / "stats.json").read_text())["adapter"] == str(adapter)
    # A language without an OWSM token: a clear error, no output.
    assert owsm_decode.main([*common, "--lang", "xx", "--out_dir", str(tiny["root"] / "decode_xx")]) == 1
    assert "'xx' has no ISO 639-3 code" in caplog.text and not (tiny["root"] / "decode_xx").exists()


def _noise_dir(path: Path, utts: dict[str, str], seed: int) -> Path:
    """A Kaldi dir of 1 s noise clips with the given transcripts (utt ids start with the language)."""
    rng = np.random.default_rng(seed)
    wavs = {}
    for utt in utts:
        wavs[utt] = str(path.parent / f"{path.name}-{utt}.wav")
        soundfile.write(wavs[utt], rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    write_data_dir(path, wav_scp=wavs, text=utts, utt2spk={u: u.split("-")[0] for u in utts},
                   utt2lang={u: u[:2] for u in utts})
    return path


def test_lora_training_through_espnet_entry_point(tiny: dict[str, Path], capsys) -> None:
    root = tiny["root"] / "train"
    root.mkdir()
    for split, count, seed in (("train", 6, 4), ("dev", 2, 5)):
        kaldi = _noise_dir(root / f"hi_{split}", {f"hi_m{i}-u{i}": SENTENCES[i % 2] for i in range(count)}, seed)
        make_s2t_dir(kaldi, root / f"s2t_{split}")
    exp = root / "exp"
    common = ["--owsm_model", str(tiny["pack"]), "--owsm_cache", str(tiny["root"] / "cache")]
    assert owsm_lora_config.main([*common, "--lora_config", str(REPO / "conf/lora/r8_qv_dec.yaml"),
                                  "--train_preset", str(REPO / "conf/owsm/lora_train.yaml"),
                                  "--out", str(root / "train.yaml"), "--adapter_meta", str(exp / "adapter.yaml")]) == 0
    lora_count = int(capsys.readouterr().out.split()[-1])
    assert lora_count == 8 * 8 * (128 + 128)
    model = fetch_owsm(str(tiny["pack"]), tiny["root"] / "cache")
    cmd = [sys.executable, "-m", "espnet_adapters.bin.espnet_run", "espnet2.bin.s2t_train",
           "--config", str(root / "train.yaml"), "--init_param", str(model.model_file), "--output_dir", str(exp),
           "--ngpu", "0", "--max_epoch", "1", "--batch_size", "3",
           "--train_shape_file", str(root / "s2t_train/text"), "--valid_shape_file", str(root / "s2t_dev/text"),
           *data_args("train", root / "s2t_train"), *data_args("valid", root / "s2t_dev")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    from espnet2.torch_utils.model_summary import get_human_readable_count

    trained = re.search(r"Number of trainable parameters: (.+?) \(", done.stderr)
    assert trained and trained.group(1).strip() == get_human_readable_count(lora_count).strip()
    checkpoint = torch.load(exp / "valid.acc.best.pth", map_location="cpu", weights_only=True)
    assert checkpoint and set(checkpoint) == set(lora_state(checkpoint))  # adapter_only: LoRA tensors only
    assert sum(value.numel() for value in checkpoint.values()) == lora_count
    shutil.copy(exp / "valid.acc.best.pth", exp / "adapter.pth")
    speech2text = load_speech2text(model, "hi", exp, OPTIONS)
    assert isinstance(transcribe(speech2text, np.zeros(8000, dtype=np.float32)), str)
