"""Language identification: models, training, metrics, save/load, Whisper baseline, entry points.

Most tests use synthetic "encoder outputs": every language adds its own
direction to noisy frames, every speaker its own offset, so a model that
learns the languages (not the speakers) generalises to held-out speakers,
whose offsets it has never seen.  They train in well under a second.  The
Whisper baseline and the end-to-end test use a tiny random Whisper (2+2
layers of width 64) with the real tokenizer's language tokens.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_encoder_cache import make_tiny_whisper, write_feats
from test_lora import tiny_whisper_config
from transformers import GenerationConfig, WhisperForConditionalGeneration

from espnet_adapters.bin import eval_lid
from espnet_adapters.bin import train_lid as train_lid_cli
from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.lid.calibration import expected_calibration_error, fit_temperature, nll
from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.data import LidSet, crop_feats, pad_frames, parse_set_spec, valid_encoder_frames
from espnet_adapters.lid.metrics import classification_report, confusion_matrix, confusion_markdown
from espnet_adapters.lid.models import LidModel, predict_proba, window_posteriors, window_starts
from espnet_adapters.lid.store import load_lid, save_lid
from espnet_adapters.lid.train import balanced_order, random_crop, train_lid
from espnet_adapters.lid.whisper_lid import whisper_lid_posteriors
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.encoder_cache import claim_cache_dir, encoder_fingerprint, shard_path, write_shard
from espnet_adapters.whisper.decode import detect_languages
from espnet_adapters.whisper.features import stack_features

CONF_LID = Path(__file__).resolve().parents[2] / "conf" / "lid"
LANGS = ("hi", "pa", "te")
D_MODEL = 32
CPU = torch.device("cpu")


def synthetic_set(name: str, speakers_per_lang: int, utts_per_speaker: int, seed: int) -> LidSet:
    """Frames = noise + language direction + speaker offset; ``seed`` draws the speakers, not the languages."""
    directions = torch.randn(len(LANGS), D_MODEL, generator=torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(seed)
    utts, langs, frames = [], [], {}
    for index, lang in enumerate(LANGS):
        for spk in range(speakers_per_lang):
            offset = 0.8 * torch.randn(D_MODEL, generator=rng)
            for number in range(utts_per_speaker):
                utt = f"{name}-{lang}-spk{spk}-{number}"
                length = int(torch.randint(10, 40, (1,), generator=rng))
                frames[utt] = 0.5 * directions[index] + offset + 2.0 * torch.randn(length, D_MODEL, generator=rng)
                utts.append(utt)
                langs.append(lang)
    return LidSet(name, utts, langs, frames)


@pytest.fixture(scope="module")
def sets() -> dict[str, LidSet]:
    return {
        "train": synthetic_set("train", 4, 10, seed=1),
        "dev": synthetic_set("dev", 2, 5, seed=2),
        "test": synthetic_set("test", 2, 10, seed=3),
    }


def quick(preset: str, max_epochs: int = 12) -> LidConfig:
    """A preset with fewer epochs: the synthetic task is learnt in a few."""
    return dataclasses.replace(LidConfig.from_yaml(CONF_LID / f"{preset}.yaml"), max_epochs=max_epochs)


def accuracy(model: LidModel, lid_set: LidSet, labels: list[str]) -> float:
    posteriors = predict_proba(model, (lid_set.frames[u] for u in lid_set.utts), 16)
    predicted = [labels[i] for i in posteriors.argmax(dim=1).tolist()]
    return float(np.mean([p == lang for p, lang in zip(predicted, lid_set.langs, strict=True)]))


@pytest.fixture(scope="module")
def trained(sets: dict[str, LidSet]):  # noqa: ANN201 - TrainResult
    return train_lid(quick("mlp_mean"), sets["train"], sets["dev"], seed=1, device=CPU)


def test_lid_beats_chance_on_held_out_speakers(trained, sets: dict[str, LidSet]) -> None:  # noqa: ANN001
    assert trained.labels == list(LANGS)
    assert accuracy(trained.model, sets["test"], trained.labels) >= 0.8  # chance: 1/3
    assert trained.dev_accuracy == max(h["dev_acc"] for h in trained.history)
    assert trained.history[trained.best_epoch - 1]["dev_acc"] == trained.dev_accuracy


@pytest.mark.parametrize("preset", ["mlp_attn", "cnn", "linear_mean"])
def test_other_models_train(preset: str, sets: dict[str, LidSet]) -> None:
    result = train_lid(quick(preset, max_epochs=8), sets["train"], sets["dev"], seed=1, device=CPU)
    assert accuracy(result.model, sets["test"], result.labels) >= 0.6


def test_training_is_seeded(sets: dict[str, LidSet]) -> None:
    runs = [train_lid(quick("cnn", max_epochs=2), sets["train"], sets["dev"], seed=7, device=CPU) for _ in range(2)]
    assert runs[0].history == runs[1].history


def test_padding_does_not_change_a_posterior(trained, sets: dict[str, LidSet]) -> None:  # noqa: ANN001
    short, long = (sets["test"].frames[u] for u in sets["test"].utts[:2])
    for preset in ("mlp_mean", "mlp_attn", "cnn"):
        model = LidModel(LidConfig.from_yaml(CONF_LID / f"{preset}.yaml"), D_MODEL, 3).eval()
        alone = predict_proba(model, [short], 1)
        together = predict_proba(model, [long[:5], short, long], 3)[1:2]  # short padded to the longest
        assert torch.allclose(alone, together, atol=1e-6), preset


def test_balanced_order_samples_languages_equally() -> None:
    targets = np.array([0] * 7 + [1] * 2 + [2] * 3)
    order = balanced_order(targets, np.random.default_rng(0))
    assert np.bincount(targets[order]).tolist() == [7, 7, 7]
    assert set(order[targets[order] == 1]) == {7, 8}
    assert set(order.tolist()) == set(range(12))  # every utterance of every language is used


def test_confusion_rows_sum_to_label_counts() -> None:
    reference = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 0, 2, 2, 1, 2]
    counts = confusion_matrix(reference, predicted, 3)
    assert counts.sum(axis=1).tolist() == [3, 2, 4]
    assert counts.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 3]]
    table = confusion_markdown(counts, ["hi", "pa", "te"], "LID")
    assert "| **pa** | 1 | 1 | 0 | 2 | 50.0% |" in table


def test_macro_f1_on_a_hand_example() -> None:
    # hi: P = 2/3, R = 2/3, F1 = 2/3; pa: P = 1/3, R = 1/2, F1 = 0.4; te: P = 1, R = 3/4, F1 = 6/7
    counts = np.array([[2, 1, 0], [1, 1, 0], [0, 1, 3]])
    report = classification_report(counts, ["hi", "pa", "te"])
    assert report["accuracy"] == pytest.approx(6 / 9)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 0.4 + 6 / 7) / 3)
    assert report["per_label"]["pa"] == pytest.approx({"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    # A label neither in the reference nor predicted does not count; one only predicted scores 0.
    report = classification_report(np.array([[2, 0, 1], [0, 0, 0], [0, 0, 0]]), ["hi", "pa", "te"])
    assert report["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)


def test_temperature_scaling_lowers_nll_on_a_miscalibrated_set() -> None:
    # Labels drawn from softmax(z): z are calibrated logits; the over-confident model reports 3 z.
    generator = torch.Generator().manual_seed(0)
    n, labels = 4000, 3
    logits = 1.5 * torch.randn(n, labels, generator=generator)
    targets = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
    sharp = 3.0 * logits
    temperature = fit_temperature(sharp, targets)
    assert temperature == pytest.approx(3.0, rel=0.15)  # recovers the sharpening
    before, after = torch.softmax(sharp, dim=1), torch.softmax(sharp / temperature, dim=1)
    assert nll(after, targets) < nll(before, targets) - 0.1
    assert expected_calibration_error(after, targets) < 0.5 * expected_calibration_error(before, targets)
    assert torch.equal(after.argmax(dim=1), before.argmax(dim=1))  # the decisions do not change
    # A perfectly confident and always right classifier is calibrated; a confident and always wrong one is not.
    one_hot = torch.eye(labels)[targets]
    assert expected_calibration_error(one_hot, targets) == 0.0
    assert expected_calibration_error(one_hot, (targets + 1) % labels) == pytest.approx(1.0)


def test_training_calibrates_on_dev_and_the_temperature_survives_save_load(
    trained, sets: dict[str, LidSet], tmp_path: Path,  # noqa: ANN001
) -> None:
    cal = trained.calibration
    assert cal is not None and cal["temperature"] == pytest.approx(float(trained.model.temperature))
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9  # T = 1 is a candidate: fitting cannot lose on dev
    save_lid(tmp_path, trained.model, trained.labels, D_MODEL, {})
    loaded = load_lid(tmp_path)
    assert float(loaded.model.temperature) == pytest.approx(cal["temperature"])
    frames = [sets["test"].frames[u] for u in sets["test"].utts]
    assert torch.allclose(predict_proba(loaded.model, frames, 8), predict_proba(trained.model, frames, 8))
    plain = train_lid(dataclasses.replace(quick("mlp_mean"), calibrate=False), sets["train"], sets["dev"], 1, CPU)
    assert plain.calibration is None and float(plain.model.temperature) == 1.0


def test_random_crops_for_training() -> None:
    frames = torch.arange(400.0).unsqueeze(1).repeat(1, 2)  # 8 s of encoder frames
    config = dataclasses.replace(LidConfig(), crop_seconds=(1.0, 2.0), crop_prob=1.0)
    rng = np.random.default_rng(0)
    crops = [random_crop(frames, config, rng) for _ in range(200)]
    lengths = {len(crop) for crop in crops}
    assert min(lengths) >= 50 and max(lengths) <= 100 and len(lengths) > 20  # 1-2 s, drawn uniformly
    starts = {int(crop[0, 0]) for crop in crops}
    assert len(starts) > 50 and all(torch.equal(crop, frames[int(crop[0, 0]):][: len(crop)]) for crop in crops)
    assert random_crop(frames[:30], config, rng).shape[0] == 30  # shorter than any crop: whole
    half = dataclasses.replace(config, crop_prob=0.5)
    whole = sum(len(random_crop(frames, half, rng)) == 400 for _ in range(400))
    assert 150 < whole < 250
    assert random_crop(frames, LidConfig(), rng) is frames  # off by default
    with pytest.raises(ValueError, match="crop_seconds"):
        LidConfig(crop_seconds=(2.0, 1.0))


def test_save_load_round_trip_and_label_check(trained, sets: dict[str, LidSet], tmp_path: Path) -> None:  # noqa: ANN001
    save_lid(tmp_path, trained.model, trained.labels, D_MODEL, {"majority_label": "hi"})
    loaded = load_lid(tmp_path, expected_labels=["te", "hi", "pa"])  # order does not matter
    assert loaded.labels == list(LANGS) and loaded.meta["majority_label"] == "hi"
    frames = [sets["test"].frames[u] for u in sets["test"].utts]
    assert torch.equal(predict_proba(loaded.model, frames, 8), predict_proba(trained.model, frames, 8))
    with pytest.raises(UserInputError, match=r"lid\.json: LID labels \[hi, pa, te\] do not match the adapters present"
                                             r" \[hi, it, pa, te\] \(no LID label for: it; no adapter for: -\)"):
        load_lid(tmp_path, expected_labels=["hi", "it", "pa", "te"])
    with pytest.raises(UserInputError, match=r"no LID label for: -; no adapter for: te"):
        load_lid(tmp_path, expected_labels=["hi", "pa"])


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my_lid.yaml"
    path.write_text("pooling: mean\nhidden_sizes: [64]\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"my_lid\.yaml: unknown key\(s\) hidden_sizes"):
        LidConfig.from_yaml(path)
    path.write_text("pooling: max\n", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"my_lid\.yaml: pooling must be one of mean, attention"):
        LidConfig.from_yaml(path)


def test_window_posteriors_shapes(trained) -> None:  # noqa: ANN001
    assert window_starts(100, 30, 10) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert window_starts(105, 30, 10)[-1] == 80  # the last window reaches the end, shorter
    frames = torch.randn(100, D_MODEL)
    posteriors = window_posteriors(frames, trained.model, win_frames=30, hop_frames=10)
    assert posteriors.shape == (8, 3) and torch.allclose(posteriors.sum(dim=1), torch.ones(8))
    assert torch.allclose(posteriors[0], predict_proba(trained.model, [frames[:30]], 1)[0], atol=1e-6)
    assert window_posteriors(frames[:12], trained.model, 30, 10).shape == (1, 3)


def test_crops_and_valid_frames() -> None:
    feats = np.random.default_rng(0).uniform(-0.5, 0.5, size=(501, 2)).astype(np.float32)
    feats[50], feats[300] = 0.75, 1.0  # the crop's loudest frame, and the utterance's
    feats[-1] = -1.0  # the all-padding frame at the utterance's floor, its max - 2
    crop = crop_feats(feats, 100)
    assert crop.shape == (101, 2) and np.array_equal(crop[:100], feats[:100])
    assert crop[-1].tolist() == [-1.25, -1.25]  # the crop's own floor
    feats[:500] -= 1.0  # a quiet utterance: the floor never goes below -1.5
    assert crop_feats(feats, 100)[-1].tolist() == [-1.5, -1.5]
    assert crop_feats(feats, 500) is feats
    assert [valid_encoder_frames(n, 1500) for n in (1, 101, 3000)] == [1, 51, 1500]
    padded, mask = pad_frames([torch.ones(2, 3), torch.ones(4, 3)])
    assert padded.shape == (2, 4, 3) and mask.sum(dim=1).tolist() == [2, 4] and padded[0, 2:].abs().sum() == 0


def test_set_spec_parsing() -> None:
    spec = parse_set_spec("dump/raw/hi_train:dump/whisper-base/hi_train:dump/whisper-base/encoder/hi_train")
    assert spec.utt2lang == Path("dump/raw/hi_train/utt2lang")
    assert spec.feats_shape == Path("dump/whisper-base/hi_train/feats_shape")
    assert spec.cache_dir == Path("dump/whisper-base/encoder/hi_train")
    for bad in ("data:feats", "data::cache", "a:b:c:d"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected DATA_DIR:FEATS_DIR:CACHE_DIR"):
            parse_set_spec(bad)


def test_whisper_lid_posteriors_restricted_to_labels(whisper_base_dir: Path) -> None:
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_whisper_config(whisper_base_dir)).eval()
    model.generation_config = GenerationConfig.from_pretrained(whisper_base_dir)
    outputs = torch.randn(2, 1500, 64)
    posteriors = whisper_lid_posteriors(model, outputs, ["hi", "pa", "te"])
    assert posteriors.shape == (2, 3) and torch.allclose(posteriors.sum(dim=1), torch.ones(2))
    swapped = whisper_lid_posteriors(model, outputs, ["te", "hi", "pa"])
    assert torch.allclose(swapped, posteriors[:, [2, 0, 1]], atol=1e-6)
    # Over every language it is Whisper's own detection.
    every = [code.strip("<|>") for code in model.generation_config.lang_to_id]
    picked = whisper_lid_posteriors(model, outputs, every).argmax(dim=1).tolist()
    assert [every[i] for i in picked] == detect_languages(model, encoder_outputs=outputs)
    with pytest.raises(UserInputError, match=r"no language token for xx"):
        whisper_lid_posteriors(model, outputs, ["hi", "xx"])


# --------------------------------------------------------------------------- entry points


def synthetic_logmel(lang_index: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Trimmed log-mel-like features: a language-specific band of energy, ending in one floor frame."""
    feats = rng.uniform(-0.5, 0.5, size=(frames, 80)).astype(np.float32)
    feats[:, 20 * lang_index : 20 * lang_index + 20] += 1.0
    feats[-1] = -1.0
    return feats


def make_set(root: Path, tiny: Path, encoder: torch.nn.Module, name: str, langs: dict[str, int], seed: int) -> str:
    """Data dir + features + their encoder cache (``tiny``'s encoder); returns the DATA:FEATS:CACHE spec."""
    rng = np.random.default_rng(seed)
    feats, utt2lang = {}, {}
    for lang, count in langs.items():
        for number in range(count):
            utt = f"{lang}-{name}-{number:02d}"
            feats[utt] = synthetic_logmel(LANGS.index(lang), int(rng.integers(150, 450)), rng)
            utt2lang[utt] = lang
    data, feats_dir, cache = root / "data" / name, root / "feats" / name, root / "cache" / name
    write_map(data / "utt2lang", utt2lang)
    scp = write_feats(feats_dir, feats)
    fingerprint = encoder_fingerprint(str(tiny), scp)
    claim_cache_dir(cache, fingerprint, str(tiny))
    with torch.inference_mode():
        outputs = encoder(input_features=stack_features(list(feats.values()))).last_hidden_state
    write_shard(shard_path(cache, 1), zip(feats, outputs), list(feats), tuple(outputs.shape[1:]), fingerprint)
    return f"{data}:{feats_dir}:{cache}"


def test_entry_points_end_to_end(tmp_path: Path, whisper_base_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny = make_tiny_whisper(tmp_path / "tiny-whisper", whisper_base_dir)
    encoder = WhisperForConditionalGeneration.from_pretrained(tiny).get_encoder().eval()
    train = [make_set(tmp_path, tiny, encoder, "hi_pa_train", {"hi": 8, "pa": 6}, 1),
             make_set(tmp_path, tiny, encoder, "te_train", {"te": 6}, 2)]
    dev = make_set(tmp_path, tiny, encoder, "dev", {lang: 3 for lang in LANGS}, 10)
    test = make_set(tmp_path, tiny, encoder, "test", {"hi": 4, "pa": 3, "te": 2}, 11)
    config = tmp_path / "lid.yaml"
    config.write_text("max_epochs: 6\nbatch_size: 8\nhidden: [32]\n", encoding="utf-8")
    lid_dir = tmp_path / "exp" / "tiny_lid_test"
    assert train_lid_cli.main(["--train_sets", *train, "--dev_sets", dev, "--config", str(config),
                           "--out_dir", str(lid_dir), "--whisper_model", str(tiny)]) == 0
    meta = json.loads((lid_dir / "lid.json").read_text())
    assert meta["labels"] == list(LANGS) and meta["majority_label"] == "hi" and meta["d_model"] == 64
    assert meta["train_label_counts"] == {"hi": 8, "pa": 6, "te": 6} and len(meta["history"]) >= 1
    assert (lid_dir / "lid_model.safetensors").is_file() and (lid_dir / "curves.png").stat().st_size > 0

    out = tmp_path / "eval"
    assert eval_lid.main(["--lid_dir", str(lid_dir), "--test_sets", test, "--out_dir", str(out),
                          "--crop_seconds", "1", "2", "--batch_size", "4"]) == 0
    posteriors = read_map(out / "posteriors")
    assert len(posteriors) == 9
    for value in posteriors.values():
        pairs = [item.split(":") for item in value.split()]
        assert [label for label, _ in pairs] == list(LANGS)
        assert sum(float(p) for _, p in pairs) == pytest.approx(1.0, abs=1e-3)
    assert read_map(out / "whisper_posteriors").keys() == posteriors.keys()
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 9 and set(results["systems"]) == {"lid", "whisper", "majority"}
    for report in results["systems"].values():
        assert np.asarray(report["confusion"]["counts"]).sum(axis=1).tolist() == [4, 3, 2]
    assert results["systems"]["majority"]["accuracy"] == pytest.approx(4 / 9)
    assert set(results["crops"]) == {"1s", "2s", "full"} and results["crops"]["1s"]["n_cropped"] == 9
    assert set(results["crops"]["1s"]) == {"n_cropped", "lid", "whisper"}
    assert results["crops"]["full"]["lid"]["accuracy"] == results["systems"]["lid"]["accuracy"]
    assert "| **hi** |" in (out / "confusion.md").read_text() and (out / "confusion.png").stat().st_size > 0
    timing = json.loads((out / "timing.json").read_text())
    assert timing["n"] == 9 and timing["lid_ms_per_utt_batch1_median"] > 0

    # A test language the LID cannot answer is refused, naming the set.
    utt2lang = tmp_path / "data" / "test" / "utt2lang"
    write_map(utt2lang, {**read_map(utt2lang), "hi-test-00": "it"})
    with caplog.at_level(logging.ERROR):
        assert eval_lid.main(["--lid_dir", str(lid_dir), "--test_sets", test, "--out_dir", str(out)]) == 1
    assert f"{utt2lang}:1: hi-test-00: language it is not a LID label (hi, pa, te)" in caplog.text
