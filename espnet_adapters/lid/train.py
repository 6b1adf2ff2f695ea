"""Training a LID model: balanced languages, AdamW, the best epoch by dev accuracy.

Real training sets are unbalanced (a mixture can hold ten times more Hindi than
Punjabi), and a classifier trained on them learns the prior: it answers the
big language when unsure, which routes a Punjabi utterance to the Hindi
adapter.  So every epoch draws each language equally often, as many
utterances as the largest language has, cycling through shuffled copies of
the smaller ones.  The model kept is the one of the epoch with the best dev
accuracy (ties: lower dev loss); ``patience`` epochs without improvement end
the run.  With ``calibrate``, the kept model's temperature is then fitted on the
same dev set (:mod:`espnet_adapters.lid.calibration`: the argmax is unchanged).
Everything random (initialisation, sampling, dropout) follows ``seed``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from espnet_adapters.lid.calibration import calibration_summary, fit_temperature
from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.data import LidSet, pad_frames
from espnet_adapters.lid.models import LidModel, predict_logits, predict_proba
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The selected model and how the run went (``history``: one dict per epoch)."""

    model: LidModel
    labels: list[str]
    best_epoch: int
    dev_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)
    calibration: dict[str, float] | None = None  # dev NLL / ECE before and after temperature scaling


def balanced_order(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch's utterance indices: every label as often as the most frequent one, shuffled.

    A smaller label's utterances are repeated as whole shuffled passes, so
    each of them is seen before any is seen twice.
    """
    groups = [np.flatnonzero(targets == label) for label in np.unique(targets)]
    per_label = max(len(group) for group in groups)
    parts = []
    for group in groups:
        passes = -(-per_label // len(group))
        parts.append(np.concatenate([rng.permutation(group) for _ in range(passes)])[:per_label])
    return rng.permutation(np.concatenate(parts))


def label_targets(lid_set: LidSet, labels: list[str]) -> torch.Tensor:
    """Label indices of a set's utterances (every language must be a label)."""
    lid_set.check_labels(labels)
    index = {label: position for position, label in enumerate(labels)}
    return torch.tensor([index[lang] for lang in lid_set.langs])


def evaluate(model: LidModel, lid_set: LidSet, targets: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the model on a set."""
    posteriors = predict_proba(model, (lid_set.frames[utt] for utt in lid_set.utts), batch_size)
    picked = posteriors[torch.arange(len(targets)), targets].clamp(min=1e-12)
    return float(-picked.log().mean()), float((posteriors.argmax(dim=1) == targets).float().mean())


FRAME_SECONDS = 0.02  # one Whisper encoder frame


def random_crop(frames: torch.Tensor, config: LidConfig, rng: np.random.Generator) -> torch.Tensor:
    """With probability ``crop_prob``, a random stretch of ``frames`` of a length drawn from ``crop_seconds``.

    Teaches the classifier to decide from a second or two of speech, as on short
    utterances and in code-switching windows; the other utterances stay whole,
    so the full-utterance decision is still learnt.  Frames shorter than the
    drawn length are kept whole.
    """
    if not config.crop_seconds or rng.random() >= config.crop_prob:
        return frames
    low, high = (max(1, round(seconds / FRAME_SECONDS)) for seconds in config.crop_seconds)
    length = int(rng.integers(low, high + 1))
    if frames.shape[0] <= length:
        return frames
    start = int(rng.integers(0, frames.shape[0] - length + 1))
    return frames[start : start + length]


def _train_epoch(
    model: LidModel, optimizer: torch.optim.Optimizer, train: LidSet, targets: torch.Tensor, order: np.ndarray,
    rng: np.random.Generator, desc: str,
) -> tuple[float, float]:
    """One pass over ``order``; (mean loss, accuracy) of the training batches (dropout on, random crops)."""
    model.train()
    device = next(model.parameters()).device
    config, batch_size = model.config, model.config.batch_size
    total_loss, correct = 0.0, 0
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=desc, mininterval=10):
        frames, mask = pad_frames([random_crop(train.frames[train.utts[i]], config, rng) for i in batch])
        batch_targets = targets[batch].to(device)
        logits = model(frames.to(device), mask.to(device))
        loss = F.cross_entropy(logits, batch_targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(batch)
        correct += int((logits.argmax(dim=1) == batch_targets).sum())
    return total_loss / len(order), correct / len(order)


def train_lid(config: LidConfig, train: LidSet, dev: LidSet, seed: int, device: torch.device) -> TrainResult:
    """Train on ``train``, select on ``dev``; the labels are the training languages, sorted."""
    labels = sorted(set(train.langs))
    if len(labels) < 2:
        raise UserInputError(f"{train.name}: LID needs at least two languages, got {', '.join(labels)}")
    train_targets, dev_targets = label_targets(train, labels), label_targets(dev, labels)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d_model = train.frames[train.utts[0]].shape[1]
    model = LidModel(config, d_model, len(labels)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best = (-1.0, -float("inf"))  # (dev accuracy, -dev loss): larger is better; epoch 1 always improves
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, history = 0, []
    for epoch in range(1, config.max_epochs + 1):
        order = balanced_order(train_targets.numpy(), rng)
        train_loss, train_acc = _train_epoch(
            model, optimizer, train, train_targets, order, rng, f"lid epoch {epoch}"
        )
        dev_loss, dev_acc = evaluate(model, dev, dev_targets, config.batch_size)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                        "dev_loss": dev_loss, "dev_acc": dev_acc})
        improved = (dev_acc, -dev_loss) > best
        if improved:
            best, best_epoch, best_state = (dev_acc, -dev_loss), epoch, copy.deepcopy(model.state_dict())
        logger.info(
            "epoch %d: train loss %.4f acc %.3f | dev loss %.4f acc %.3f%s",
            epoch, train_loss, train_acc, dev_loss, dev_acc, " (best)" if improved else "",
        )
        if config.patience and epoch - best_epoch >= config.patience:
            logger.info("no better dev accuracy for %d epochs: stopping", config.patience)
            break
    model.load_state_dict(best_state)
    model.eval()
    calibration = None
    if config.calibrate:
        logits = predict_logits(model, (dev.frames[utt] for utt in dev.utts), config.batch_size)
        temperature = fit_temperature(logits, dev_targets)
        model.temperature.fill_(temperature)
        calibration = calibration_summary(logits, dev_targets, temperature)
        logger.info("temperature %.3f on dev: NLL %.4f -> %.4f, ECE %.4f -> %.4f", temperature,
                    calibration["nll_before"], calibration["nll_after"], calibration["ece_before"],
                    calibration["ece_after"])
    return TrainResult(model, labels, best_epoch, best[0], history, calibration)
