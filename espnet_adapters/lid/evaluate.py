"""Evaluating a trained LID model on a pooled test set, beside two baselines.

Systems compared:
  lid       the trained model on the cached encoder outputs' valid frames
  whisper   Whisper's own language detection: one decoder step from
            <|startoftranscript|> on the same cached outputs, softmax over the
            LID's labels only (optional)
  majority  always the most frequent training language (from lid.json)
and, for lid and whisper, short crops: the first N seconds of each utterance's
trimmed log-mel, padded to Whisper's 30 s window and run through the base
encoder, which is the CPU cost of an evaluation (one encoder pass per
utterance and crop length, batched).  Utterances no longer than N s are used
whole; the results count the cropped ones.

:func:`evaluate_lid` writes what ``python -m espnet_adapters.bin.eval_lid --help`` lists
(posteriors, results.json, confusion.png / .md, timing.json).
"""

from __future__ import annotations

import itertools
import json
import logging
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm
from transformers import WhisperForConditionalGeneration

from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.lid.calibration import calibration_summary
from espnet_adapters.lid.data import CachedSet, SetSpec, crop_feats, open_sets, valid_encoder_frames
from espnet_adapters.lid.metrics import confusion_markdown, evaluate_predictions
from espnet_adapters.lid.models import LidModel, predict_logits, predict_proba
from espnet_adapters.lid.plots import plot_confusions
from espnet_adapters.lid.store import LoadedLid, lid_base_model, load_lid
from espnet_adapters.lid.whisper_lid import whisper_lid_posteriors
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.features import SAMPLE_RATE, iter_feats_scp, stack_features
from espnet_adapters.whisper.model import load_whisper, resolve_model

logger = logging.getLogger(__name__)

T = TypeVar("T")
TIMING_UTTS = 200  # utterances timed one by one: enough for a stable median, cheap on any test set
WARMUP_UTTS = 3


@dataclass(frozen=True)
class EvalOptions:
    """What to measure besides the LID on full utterances."""

    crop_seconds: tuple[float, ...] = (1.0, 2.0, 3.0)  # crop lengths; none: no crops (and no encoder run)
    whisper_baseline: bool = True  # also score Whisper's own LID
    batch_size: int = 8  # utterances per encoder / decoder call


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _majority_label(lid_dir: Path, lid: LoadedLid) -> str:
    """The majority-class baseline's answer: the most frequent training language (lid.json)."""
    label = lid.meta.get("majority_label")
    if label not in lid.labels:
        raise UserInputError(f"{lid_dir}/lid.json: majority_label {label!r} is not one of the labels {lid.labels}")
    return str(label)


def _timed(function: Callable[..., T], *args: Any) -> tuple[T, float]:
    """``function(*args)`` and how long it took, in milliseconds."""
    start = time.perf_counter()
    value = function(*args)
    return value, 1000 * (time.perf_counter() - start)


def _lid_timing(model: LidModel, test: CachedSet, batch_size: int) -> dict[str, float]:
    """Milliseconds per utterance of the LID on cached outputs (read apart), batch 1 and batched.

    Streams the utterances (one batch in memory): 30 s utterances have 1500
    frames of d_model floats each.
    """
    utts = test.utts[:TIMING_UTTS]
    predict_proba(model, [test.frames[utt] for utt in utts[:WARMUP_UTTS]], 1)  # first calls allocate
    read_ms, single_ms, batched_ms = [], [], 0.0
    for utt in utts:
        frames, ms = _timed(test.frames.__getitem__, utt)
        read_ms.append(ms)
        single_ms.append(_timed(predict_proba, model, [frames], 1)[1])
    for batch in _batches(utts, batch_size):
        batched_ms += _timed(predict_proba, model, [test.frames[utt] for utt in batch], batch_size)[1]
    return {"n": len(utts), "cache_read_ms_per_utt": statistics.fmean(read_ms),
            "lid_ms_per_utt_batch1_median": statistics.median(single_ms),
            "lid_ms_per_utt_batch1_mean": statistics.fmean(single_ms),
            "lid_ms_per_utt_batched": batched_ms / len(utts), "lid_batch_size": batch_size}


def _whisper_full(
    whisper: WhisperForConditionalGeneration, test: CachedSet, labels: list[str], batch_size: int
) -> tuple[torch.Tensor, float]:
    """Whisper baseline posteriors on the cached full outputs, and its ms per utterance (decoder step only)."""
    parts, total_ms = [], 0.0
    for batch in tqdm(list(_batches(test.utts, batch_size)), desc="whisper lid", mininterval=10):
        posteriors, ms = _timed(whisper_lid_posteriors, whisper, test.frames.encoder_outputs(batch), labels)
        parts.append(posteriors)
        total_ms += ms
    return torch.cat(parts), total_ms / len(test.utts)


def _iter_feats(specs: Sequence[SetSpec]) -> Iterator[tuple[str, np.ndarray]]:
    """Trimmed log-mel of every test utterance, set after set."""
    for spec in specs:
        yield from iter_feats_scp(spec.feats_scp, list(read_map(spec.utt2lang)))


@torch.inference_mode()
def _classify_crops(
    whisper: WhisperForConditionalGeneration, lid: LoadedLid, feats: Sequence[np.ndarray], n_frames: int,
    with_whisper: bool,
) -> tuple[dict[str, torch.Tensor], int]:
    """Posteriors of the LID (and Whisper) on the first ``n_frames`` of a batch, from one encoder pass;
    and how many utterances were longer than that."""
    crops = [crop_feats(item, n_frames) for item in feats]
    features = stack_features(crops).to(whisper.device, whisper.dtype)
    outputs = whisper.get_encoder()(input_features=features).last_hidden_state
    valid = [outputs[i, : valid_encoder_frames(len(crop), outputs.shape[1])].float() for i, crop in enumerate(crops)]
    posteriors = {"lid": predict_proba(lid.model, valid, len(valid))}
    if with_whisper:
        posteriors["whisper"] = whisper_lid_posteriors(whisper, outputs, lid.labels)
    return posteriors, sum(len(crop) < len(item) for crop, item in zip(crops, feats, strict=True))


def _crop_posteriors(
    specs: Sequence[SetSpec], whisper: WhisperForConditionalGeneration, lid: LoadedLid, utts: Sequence[str],
    frames_per_second: int, options: EvalOptions,
) -> dict[float, tuple[dict[str, torch.Tensor], int]]:
    """Per crop length: the posteriors of each system on the crops, in the order of ``utts``, and the
    number of utterances cut."""
    parts: dict[float, dict[str, list[torch.Tensor]]] = {seconds: defaultdict(list) for seconds in options.crop_seconds}
    cut: Counter[float] = Counter()
    order: list[str] = []
    stream = _iter_feats(specs)
    with tqdm(total=len(utts), desc="lid crops", mininterval=10) as progress:
        while batch := list(itertools.islice(stream, options.batch_size)):
            order += [utt for utt, _ in batch]
            for seconds in options.crop_seconds:
                n_frames = round(seconds * frames_per_second)
                feats = [item for _, item in batch]
                posteriors, cut_now = _classify_crops(whisper, lid, feats, n_frames, options.whisper_baseline)
                cut[seconds] += cut_now
                for name, value in posteriors.items():
                    parts[seconds][name].append(value)
            progress.update(len(batch))
    position = {utt: index for index, utt in enumerate(order)}
    index = torch.tensor([position[utt] for utt in utts])
    return {seconds: ({name: torch.cat(values)[index] for name, values in systems.items()}, cut[seconds])
            for seconds, systems in parts.items()}


def _summary(reference: Sequence[int], posteriors: torch.Tensor, labels: list[str]) -> dict[str, float]:
    report = evaluate_predictions(reference, posteriors.argmax(dim=1).tolist(), labels)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


@dataclass
class Evaluation:
    """Everything measured on the pooled test set, before it is written out."""

    labels: list[str]
    reference: list[int]  # label index per test utterance
    posteriors: dict[str, torch.Tensor] = field(default_factory=dict)  # lid, whisper: full utterances
    crops: dict[str, dict[str, Any]] = field(default_factory=dict)  # "1s" ...: n_cropped, lid, whisper
    timing: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # lid: NLL / ECE before and after its temperature

    def systems(self, majority: str) -> dict[str, dict[str, Any]]:
        """Full classification reports: lid, whisper (when run), and the majority-class baseline."""
        predictions = {name: p.argmax(dim=1).tolist() for name, p in self.posteriors.items()}
        predictions["majority"] = [self.labels.index(majority)] * len(self.reference)
        reports = {name: evaluate_predictions(self.reference, pred, self.labels) for name, pred in predictions.items()}
        reports["majority"]["label"] = majority
        return reports


def evaluate(
    lid: LoadedLid, test: CachedSet, specs: Sequence[SetSpec], whisper_model: str, device: torch.device,
    options: EvalOptions,
) -> Evaluation:
    """LID on the cached outputs (timed); the Whisper baseline and the crops when asked for."""
    labels, batch_size = lid.labels, lid.model.config.batch_size
    result = Evaluation(labels, [labels.index(lang) for lang in test.langs])
    logits = predict_logits(lid.model, (test.frames[utt] for utt in test.utts), batch_size)
    result.posteriors["lid"] = torch.softmax(logits, dim=-1)
    temperature = float(lid.model.temperature)
    # the logits before temperature scaling are logits * T: NLL / ECE before and after on this set
    result.calibration = calibration_summary(logits * temperature, torch.tensor(result.reference), temperature)
    result.timing = {"device": str(device), "num_threads": torch.get_num_threads(),
                     **_lid_timing(lid.model, test, batch_size)}
    if options.whisper_baseline or options.crop_seconds:
        whisper, processor = load_whisper(whisper_model, device)
        if options.whisper_baseline:
            result.posteriors["whisper"], result.timing["whisper_lid_ms_per_utt_batched"] = _whisper_full(
                whisper, test, labels, options.batch_size
            )
        if options.crop_seconds:
            frames_per_second = SAMPLE_RATE // processor.feature_extractor.hop_length
            crops = _crop_posteriors(specs, whisper, lid, test.utts, frames_per_second, options)
            for seconds, (posteriors, n_cropped) in crops.items():
                systems = {name: _summary(result.reference, p, labels) for name, p in posteriors.items()}
                result.crops[f"{seconds:g}s"] = {"n_cropped": n_cropped, **systems}
    full = {name: _summary(result.reference, p, labels) for name, p in result.posteriors.items()}
    result.crops["full"] = {"n_cropped": 0, **full}
    return result


def _write_posteriors(path: Path, utts: Sequence[str], posteriors: torch.Tensor, labels: Sequence[str]) -> None:
    rows = {utt: " ".join(f"{label}:{p:.4f}" for label, p in zip(labels, row.tolist(), strict=True))
            for utt, row in zip(utts, posteriors, strict=True)}
    write_map(path, rows)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    with atomic_write(path) as handle:
        json.dump(record, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def _write_confusions(out: Path, systems: dict[str, dict[str, Any]], labels: list[str], lid_name: str) -> None:
    """confusion.png and confusion.md, for the LID and the Whisper baseline (majority's is one column)."""
    titles = {"lid": f"LID ({lid_name})", "whisper": "Whisper <|lang|> (restricted)"}
    matrices = {title: np.asarray(systems[name]["confusion"]["counts"])
                for name, title in titles.items() if name in systems}
    plot_confusions(matrices, labels, out / "confusion.png")
    with atomic_write(out / "confusion.md") as handle:
        handle.write("\n".join(confusion_markdown(counts, labels, title) for title, counts in matrices.items()))


def evaluate_lid(
    lid_dir: Path, specs: Sequence[SetSpec], out_dir: Path, device: torch.device, options: EvalOptions,
    whisper_model: str | None = None,
) -> Evaluation:
    """Evaluate the LID in ``lid_dir`` on the pooled ``specs``, then write the outputs (results.json last).

    ``whisper_model`` (default: lid.json's base model) must be the model the LID was trained on.
    """
    lid = load_lid(lid_dir)
    lid.model.to(device)
    whisper_model = lid_base_model(lid_dir, lid, whisper_model)
    test = open_sets(specs, whisper_model)
    test.check_labels(lid.labels)
    evaluation = evaluate(lid, test, specs, whisper_model, device, options)
    systems = evaluation.systems(_majority_label(lid_dir, lid))
    for name, prefix in (("lid", ""), ("whisper", "whisper_")):
        if name in evaluation.posteriors:
            _write_posteriors(out_dir / f"{prefix}posteriors", test.utts, evaluation.posteriors[name], lid.labels)
    _write_confusions(out_dir, systems, lid.labels, Path(lid.meta["config_file"]).stem)
    _write_json(out_dir / "timing.json", evaluation.timing)
    _write_json(out_dir / "results.json", {
        "n": len(test.utts), "labels": lid.labels, "test_sets": [str(spec.data_dir) for spec in specs],
        "lid_dir": str(lid_dir), "base_model": resolve_model(whisper_model), "systems": systems,
        "crops": evaluation.crops, "calibration": evaluation.calibration,
        "dev_calibration": lid.meta.get("dev_calibration"),
    })
    for name, report in systems.items():
        logger.info("%-8s accuracy %.3f macro-F1 %.3f (n=%d)",
                    name, report["accuracy"], report["macro_f1"], report["n"])
    for crop, scores in evaluation.crops.items():
        shown = "  ".join(f"{k} acc {v['accuracy']:.3f}" for k, v in scores.items() if k != "n_cropped")
        logger.info("crop %-4s %s (%d cut)", crop, shown, scores["n_cropped"])
    logger.info("LID %.3f ms/utt (batch 1, median) on cached outputs -> %s",
                evaluation.timing["lid_ms_per_utt_batch1_median"], out_dir)
    return evaluation
