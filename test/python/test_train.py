"""LoRA training on a tiny random Whisper: learning, frozen base, outputs, resume after kill -9, bad input.

Utterances are random noise with short Hindi transcripts: the tiny model can
overfit them (the point is the plumbing, not the acoustics).  Features are
dumped with the recipe's own ``logmel`` into kaldiio arks, as stage 3 does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from peft import PeftModel
from test_lora import tiny_whisper_config
from transformers import GenerationConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.bin import cache_encoder, train_lora
from espnet_adapters.train.data import BucketBatchSampler, load_dataset
from espnet_adapters.train.trainer import TrainConfig, Trainer, seed_everything
from espnet_adapters.whisper.features import logmel
from espnet_adapters.whisper.decode import DecodeOptions
from espnet_adapters.whisper.lora import LoraSpec, apply_lora

MAIN_ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ["नमस्ते दुनिया", "यह एक परीक्षण है", "फ़ाइल खोलें", "सहेजें और बंद करें", "नया फ़ोल्डर", "मदद"]


@pytest.fixture(scope="module")
def tiny_dir(whisper_base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random Whisper with base's tokenizer, feature extractor and generation config."""
    out = tmp_path_factory.mktemp("tiny") / "whisper-tiny-random"
    out.mkdir()
    for item in whisper_base_dir.iterdir():
        if item.name not in ("model.safetensors", "config.json", "generation_config.json", "conversion.json"):
            shutil.copy(item, out / item.name)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_whisper_config(whisper_base_dir))
    model.generation_config = GenerationConfig.from_pretrained(whisper_base_dir)
    model.save_pretrained(out)
    return out


def make_set(root: Path, name: str, texts: list[str], extractor: WhisperFeatureExtractor, seed: int) -> tuple[Path, Path]:
    """A Kaldi dir (text, utt2lang) and its feats.scp, from noise of 0.5-1.5 s."""
    rng = np.random.default_rng(seed)
    data = root / name
    feats_dir = root / f"feats_{name}"
    data.mkdir(parents=True)
    feats_dir.mkdir()
    utts = [f"{name}-{i:03d}" for i in range(len(texts))]
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in zip(utts, texts)), encoding="utf-8")
    (data / "utt2lang").write_text("".join(f"{u} hi\n" for u in utts), encoding="utf-8")
    scp = feats_dir / "feats.scp"
    with kaldiio.WriteHelper(f"ark,scp:{feats_dir / 'feats.ark'},{scp}") as writer:
        for utt in utts:
            audio = (0.1 * rng.standard_normal(int(16000 * rng.uniform(0.5, 1.5)))).astype(np.float32)
            writer(utt, logmel(audio, extractor))
    return data, scp


@pytest.fixture(scope="module")
def sets(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("data")
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_dir)
    return {
        "train4": make_set(root, "train4", SENTENCES[:4], extractor, 1),
        "train6": make_set(root, "train6", SENTENCES, extractor, 2),
        "dev": make_set(root, "dev", SENTENCES[4:], extractor, 3),
    }


def write_yaml(path: Path, values: dict[str, object]) -> Path:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def cli_args(tiny: Path, sets: dict[str, tuple[Path, Path]], train: str, train_cfg: Path, out: Path,
             lora: Path = MAIN_ROOT / "conf/lora/r8_qv_dec.yaml") -> list[str]:
    (train_dir, train_feats), (dev_dir, dev_feats) = sets[train], sets["dev"]
    return ["--lang", "hi", "--train_dir", str(train_dir), "--train_feats", str(train_feats),
            "--dev_dir", str(dev_dir), "--dev_feats", str(dev_feats), "--whisper_model", str(tiny),
            "--lora_config", str(lora), "--train_config", str(train_cfg), "--out_dir", str(out),
            "--num_threads", "1", "--max_new_tokens", "4"]


def run_cli(args: list[str]) -> int:
    """``train_lora.main`` in-process; drops the train.log handler it adds to the root logger."""
    before = list(logging.getLogger().handlers)
    try:
        return train_lora.main(args)
    finally:
        for handler in set(logging.getLogger().handlers) - set(before):
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_sampler_is_deterministic_and_bucketed() -> None:
    lengths = [5, 40, 6, 41, 7, 42, 8, 43]
    sampler = BucketBatchSampler(lengths, batch_size=4, seed=3)
    first = sampler.epoch_batches(0)
    assert first == BucketBatchSampler(lengths, 4, 3).epoch_batches(0)
    assert sorted(sorted(b) for b in first) == [[0, 2, 4, 6], [1, 3, 5, 7]]  # short with short
    assert sorted(i for b in sampler.epoch_batches(1) for i in b) == list(range(8))


def test_overfit_frozen_base_and_outputs(tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """20 steps on 4 utterances: the loss falls, only the adapter changes, every output is there."""
    processor = WhisperProcessor.from_pretrained(tiny_dir)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_dir)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    seed_everything(1)
    peft_model = apply_lora(model, LoraSpec(r=8, lora_alpha=16, lora_dropout=0.0))
    common = {"lang": "hi", "tokenizer": processor.tokenizer, "max_target_positions": 448}
    train_set = load_dataset(sets["train4"][0], feats_scp=sets["train4"][1], **common)
    dev_set = load_dataset(sets["dev"][0], feats_scp=sets["dev"][1], **common)
    cfg = TrainConfig(batch_size=2, lr=1e-2, warmup_steps=2, max_steps=20, eval_every=10, save_every=10)
    out = tmp_path / "exp"
    state = Trainer(peft_model, processor.tokenizer, train_set, dev_set, cfg, out, lang="hi",
                    device=torch.device("cpu"), seed=1, signature={"test": 1}, meta={"lang": "hi"},
                    decode_opts=DecodeOptions(max_new_tokens=6)).run()

    losses = [h["loss"] for h in state.history]
    assert len(losses) == 20 and np.mean(losses[-4:]) < np.mean(losses[:4]) - 2.0  # nats per token
    after = {k.replace(".base_layer", ""): v for k, v in peft_model.get_base_model().state_dict().items()
             if "lora_" not in k}
    assert after.keys() == base.keys()
    assert all(torch.equal(after[k], base[k]) for k in base)

    assert [e["step"] for e in state.evals] == [0, 10, 20]  # step 0: the base model
    stats = json.loads((out / "train_stats.json").read_text())
    assert stats["steps"] == 20 and stats["trainable_params"] > 0
    assert stats["adapter"] and stats["best_step"] == max((e for e in state.evals[1:]),
                                                          key=lambda e: (-e["dev_wer"], -e["dev_loss"]))["step"]
    assert stats["base_dev_wer"] == state.evals[0]["dev_wer"]
    # every evaluation's wall time, and their sum beside the training steps' (where stage 6's time goes)
    assert all(e["seconds"] > 0 for e in stats["evals"]) and stats["train_seconds"] > 0
    assert stats["eval_seconds"] == pytest.approx(sum(e["seconds"] for e in stats["evals"]), abs=0.02)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    meta = json.loads((out / "adapter" / "lora_meta.json").read_text())
    assert meta["step"] == stats["best_step"] and meta["lang"] == "hi"

    fresh = WhisperForConditionalGeneration.from_pretrained(tiny_dir)
    loaded = PeftModel.from_pretrained(fresh, str(out / "adapter"))  # upstream loader, no help from us
    trained = dict(peft_model.named_parameters())
    if stats["best_step"] == 20:
        assert all(torch.equal(p, trained[n]) for n, p in loaded.named_parameters() if "lora_" in n)


def test_resume_after_kill_matches_uninterrupted_run(
    tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """kill -9 after a mid-epoch checkpoint, same command again: same steps, same losses.

    Dropout (LoRA 0.05) and SpecAugment make the losses depend on the torch and
    numpy RNGs, so this also checks that they are restored.
    """
    cfg = write_yaml(tmp_path / "train.yaml", {
        "batch_size": 2, "lr": 0.005, "warmup_steps": 2, "max_steps": 14, "eval_every": 5, "save_every": 2,
        "spec_augment": True, "log_every": 1,
    })  # 6 utterances in batches of 2: every checkpoint but one is mid-epoch
    reference = tmp_path / "reference"
    assert run_cli(cli_args(tiny_dir, sets, "train6", cfg, reference)) == 0

    resumed = tmp_path / "resumed"
    command = [sys.executable, "-m", "espnet_adapters.bin.train_lora",
               *cli_args(tiny_dir, sets, "train6", cfg, resumed)]
    env = {**os.environ, "PYTHONPATH": str(MAIN_ROOT)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = resumed / "checkpoints" / "last" / "trainer_state.pt"
    deadline = time.monotonic() + 300
    while not state_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(state_file, weights_only=True)["run"]
    assert 0 < killed_at["step"] < 14 and killed_at["position"] not in (0, 3), "not killed mid-epoch"
    assert not (resumed / "train.done").exists()

    assert run_cli(cli_args(tiny_dir, sets, "train6", cfg, resumed)) == 0
    ref_stats = json.loads((reference / "train_stats.json").read_text())
    res_stats = json.loads((resumed / "train_stats.json").read_text())
    assert [h["step"] for h in res_stats["history"]] == list(range(1, 15))
    np.testing.assert_allclose([h["loss"] for h in res_stats["history"]],
                               [h["loss"] for h in ref_stats["history"]], rtol=0, atol=1e-5)
    np.testing.assert_allclose([e["dev_loss"] for e in res_stats["evals"]],
                               [e["dev_loss"] for e in ref_stats["evals"]], rtol=0, atol=1e-5)
    assert res_stats["best_step"] == ref_stats["best_step"]
    assert "resumed from" in (resumed / "train.log").read_text()

    # Finished: the same command is a no-op; other options start over.
    mtime = (resumed / "train_stats.json").stat().st_mtime_ns
    assert run_cli(cli_args(tiny_dir, sets, "train6", cfg, resumed)) == 0
    assert (resumed / "train_stats.json").stat().st_mtime_ns == mtime
    assert run_cli([*cli_args(tiny_dir, sets, "train6", cfg, resumed), "--seed", "2"]) == 0
    assert "starting over" in (resumed / "train.log").read_text()
    reseeded = json.loads((resumed / "train_stats.json").read_text())["history"]
    assert len(reseeded) == 14 and reseeded[0]["loss"] != res_stats["history"][0]["loss"]


def test_encoder_cache_and_options_run(tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """Decoder-only training on cached encoder outputs; bf16 autocast and gradient checkpointing run."""
    caches = {}
    for name in ("train4", "dev"):
        caches[name] = tmp_path / f"cache_{name}"
        assert cache_encoder.main(["--feats_scp", str(sets[name][1]), "--whisper_model", str(tiny_dir),
                                   "--out_dir", str(caches[name]), "--shard", "1"]) == 0
    cfg = write_yaml(tmp_path / "train.yaml", {"batch_size": 2, "max_steps": 2, "eval_every": 2,
                                               "precision": "bf16"})
    out = tmp_path / "cached"
    args = [*cli_args(tiny_dir, sets, "train4", cfg, out), "--train_encoder_cache", str(caches["train4"]),
            "--dev_encoder_cache", str(caches["dev"])]
    assert run_cli(args) == 0
    assert (out / "adapter" / "adapter_model.safetensors").exists()

    ckpt = write_yaml(tmp_path / "ckpt.yaml", {"batch_size": 2, "max_steps": 1, "eval_every": 1,
                                               "grad_checkpointing": True})
    assert run_cli(cli_args(tiny_dir, sets, "train4", ckpt, tmp_path / "ckpt",
                            lora=MAIN_ROOT / "conf/lora/r32_qv_both.yaml")) == 0
    history = json.loads((tmp_path / "ckpt" / "train_stats.json").read_text())["history"]
    assert len(history) == 1 and np.isfinite(history[0]["loss"])


def test_bad_input_is_reported_by_file(
    tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_yaml(tmp_path / "train.yaml", {"max_steps": 1})

    def fails(args: list[str], *needles: str) -> None:
        caplog.clear()
        assert run_cli(args) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors and all(n in errors[-1] for n in needles), errors

    good = cli_args(tiny_dir, sets, "train4", cfg, tmp_path / "out")
    train_dir, train_feats = sets["train4"]

    missing_ark = tmp_path / "missing" / "feats.scp"
    missing_ark.parent.mkdir()
    missing_ark.write_text(train_feats.read_text().replace(str(train_feats.parent), "/nonexistent"))
    fails([*good, "--train_feats", str(missing_ark)], f"{missing_ark}:1:", "does not exist")

    long_dir = tmp_path / "long"
    shutil.copytree(train_dir, long_dir)
    lines = (long_dir / "text").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].split()[0] + " " + " ".join(["परीक्षण"] * 300)
    (long_dir / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    fails([*good, "--train_dir", str(long_dir)], f"{long_dir / 'text'}:3:", "448 positions")

    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    (empty_dir / "text").write_text("")
    (empty_dir / "utt2lang").write_text("")
    fails([*good, "--train_dir", str(empty_dir)], f"{empty_dir / 'text'}: no utterances")

    no_match = write_yaml(tmp_path / "nomatch.yaml", {"r": 4, "lora_alpha": 8, "target_modules": ["qkv"]})
    fails([*good, "--lora_config", str(no_match)], f"{no_match}: target_modules ['qkv'] match no module")

    both = str(MAIN_ROOT / "conf/lora/r32_qv_both.yaml")
    fails([*good, "--lora_config", both, "--train_encoder_cache", str(tmp_path)], both, "changes the encoder")

    typo = write_yaml(tmp_path / "typo.yaml", {"learning_rate": 0.1})
    fails([*good, "--train_config", str(typo)], f"{typo}: unknown key(s) learning_rate")

    fp16 = write_yaml(tmp_path / "fp16.yaml", {"precision": "fp16"})
    fails([*good, "--train_config", str(fp16)], f"{fp16}: precision fp16 needs CUDA")


def test_same_paths_with_other_data_retrain(tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """The signature covers the data's content: new transcripts or features under the same paths start over."""
    data = tmp_path / "data"
    shutil.copytree(sets["train4"][0], data / "train")
    shutil.copytree(sets["train4"][1].parent, data / "feats")
    scp = data / "feats" / "feats.scp"
    scp.write_text(scp.read_text().replace(str(sets["train4"][1].parent), str(data / "feats")))
    cfg = write_yaml(tmp_path / "t.yaml", {"batch_size": 2, "max_steps": 2, "eval_every": 2, "save_every": 2,
                                           "warmup_steps": 0})
    out = tmp_path / "exp"
    args = cli_args(tiny_dir, {"t": (data / "train", scp), "dev": sets["dev"]}, "t", cfg, out)
    assert run_cli(args) == 0
    assert run_cli(args) == 0
    assert "nothing to do" in (out / "train.log").read_text()
    text = data / "train" / "text"
    text.write_text(text.read_text().replace(SENTENCES[0], SENTENCES[5]), encoding="utf-8")
    assert run_cli(args) == 0
    assert (out / "train.log").read_text().count("starting over") == 1
    # Same transcripts, other features (a re-dump of other audio) at the same paths.
    feats = dict(kaldiio.load_scp(str(scp)).items())
    before = scp.read_text()
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats' / 'feats.ark'},{scp}") as writer:
        for utt, matrix in feats.items():
            writer(utt, matrix + 0.25)
    assert scp.read_text() == before
    assert run_cli(args) == 0
    assert (out / "train.log").read_text().count("starting over") == 2


def test_labels_begin_with_a_token_whisper_may_emit_first(whisper_base_dir: Path) -> None:
    """Whisper's decoding suppresses a bare space as the first token (begin_suppress_tokens): a label
    beginning with one taught the Punjabi and Telugu adapters a first token they could never emit,
    and they put a junk token (我, 大, -) before every first word instead."""
    from transformers import WhisperTokenizer

    from espnet_adapters.data.synth import read_sentences
    from espnet_adapters.train.data import label_text_tokens

    tokenizer = WhisperTokenizer.from_pretrained(whisper_base_dir)
    suppressed = set(GenerationConfig.from_pretrained(whisper_base_dir).begin_suppress_tokens)
    assert tokenizer.encode(" ", add_special_tokens=False)[0] in suppressed
    repo = Path(__file__).resolve().parents[2]
    for lang in ("hi", "it", "pa", "te"):
        for text in read_sentences(repo / "local" / "sentences" / f"{lang}.txt")[:100]:
            tokens = label_text_tokens(tokenizer, text)
            assert tokens[0] not in suppressed, (lang, text)
            assert tokenizer.decode(tokens).strip() == text
    # Where the space merges with the first letter, the label keeps it, as Whisper's transcripts do.
    assert tokenizer.decode(label_text_tokens(tokenizer, "Il periodo.")[:1]) == " Il"


def test_wandb_tracker_offline(tiny_dir: Path, sets: dict[str, tuple[Path, Path]], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--tracker wandb: an offline W&B run under the experiment dir holds the config and the metrics logged."""
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default must be offline: no network, no account
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # ignored: the run lives beside the adapter
    processor = WhisperProcessor.from_pretrained(tiny_dir)
    seed_everything(1)
    peft_model = apply_lora(WhisperForConditionalGeneration.from_pretrained(tiny_dir),
                            LoraSpec(r=4, lora_alpha=8, lora_dropout=0.0))
    common = {"lang": "hi", "tokenizer": processor.tokenizer, "max_target_positions": 448}
    train_set = load_dataset(sets["train4"][0], feats_scp=sets["train4"][1], **common)
    dev_set = load_dataset(sets["dev"][0], feats_scp=sets["dev"][1], **common)
    cfg = TrainConfig(batch_size=2, lr=1e-2, warmup_steps=1, max_steps=4, eval_every=2, save_every=2)
    out = tmp_path / "exp"
    state = Trainer(peft_model, processor.tokenizer, train_set, dev_set, cfg, out, lang="hi",
                    device=torch.device("cpu"), seed=1, signature={"test": 1}, meta={"lang": "hi"},
                    decode_opts=DecodeOptions(max_new_tokens=4), tracker="wandb").run()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and not (out / "tensorboard").exists()
    run_id = (out / "wandb_run_id").read_text().strip()
    assert runs[0].name.endswith(run_id)
    records = wandb_records(runs[0] / f"run-{run_id}.wandb")
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                     for item in record.history.item}
            history[items["_step"]] = items
    assert sorted(history) == [0, 1, 2, 3, 4]
    assert [history[h["step"]]["train/loss"] for h in state.history] == pytest.approx(
        [h["loss"] for h in state.history])
    for result in state.evals:  # steps 0 (the base model), 2 and 4
        assert history[result["step"]]["dev/wer"] == pytest.approx(result["dev_wer"])
        assert history[result["step"]]["dev/loss"] == pytest.approx(result["dev_loss"])
    run = next(record.run for record in records if record.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["lang"] == "hi" and config["max_steps"] == 4


def wandb_records(path: Path) -> list:  # type: ignore[type-arg]
    """The protobuf records of a W&B run file: a 7-byte header, then LevelDB-log blocks of 32 KiB
    (7-byte chunk headers: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, block, chunks, pending = 7, 32768, [], b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
        else:
            break
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records
