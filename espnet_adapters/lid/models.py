"""LID models over encoder frames: [1-D CNN] -> mean|attention pooling -> linear|MLP.

Every model takes a padded batch of frames (B, T, d_model) and the mask of
real frames (B, T), so utterances of any length share one batch and padding
never enters a mean, an attention softmax or (zeroed before every
convolution) a CNN's receptive field.  A LayerNorm on the input frames comes
first: a few channels of Whisper's encoder output are orders of magnitude
larger than the rest and would otherwise dominate a linear probe's training.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import nn

from espnet_adapters.lid.config import LidConfig
from espnet_adapters.lid.data import pad_frames
from espnet_adapters.lid.windows import window_starts


class MeanPooling(nn.Module):
    """The average of the real frames."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(frames.dtype)
        return (frames * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class AttentionPooling(nn.Module):
    """A learned weighted average: frames that carry the language (vowels, not silence) count more."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).unsqueeze(-1)
        return (frames * weights).sum(dim=1)


class ConvFrontend(nn.Module):
    """Stride-1 1-D convolutions over time: local (~100 ms) patterns before pooling."""

    def __init__(self, dim: int, config: LidConfig) -> None:
        super().__init__()
        sizes = [dim] + [config.cnn_channels] * config.cnn_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(n_in, n_out, config.cnn_kernel, padding=config.cnn_kernel // 2)
            for n_in, n_out in itertools.pairwise(sizes)
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(frames.dtype)
        hidden = frames.transpose(1, 2)  # (B, D, T): Conv1d's layout
        for conv in self.convs:
            hidden = self.dropout(torch.relu(conv(hidden * keep)))
        return hidden.transpose(1, 2)


def _classifier(dim: int, n_labels: int, config: LidConfig) -> nn.Sequential:
    sizes = [dim, *config.hidden] if config.classifier == "mlp" else [dim]
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(config.dropout)]
    layers.append(nn.Linear(sizes[-1], n_labels))
    return nn.Sequential(*layers)


class LidModel(nn.Module):
    """Frames (B, T, d_model) + mask (B, T) -> language logits (B, n_labels)."""

    def __init__(self, config: LidConfig, d_model: int, n_labels: int) -> None:
        super().__init__()
        self.config = config
        self.norm = nn.LayerNorm(d_model)
        self.frontend = ConvFrontend(d_model, config) if config.frontend == "cnn" else None
        dim = config.cnn_channels if self.frontend is not None else d_model
        self.pooling = MeanPooling() if config.pooling == "mean" else AttentionPooling(dim, config.attention_dim)
        self.classifier = _classifier(dim, n_labels, config)
        # Temperature scaling (espnet_adapters.lid.calibration): 1 while training, fitted on dev
        # after it; kept in lid.json, not in the weights.
        self.register_buffer("temperature", torch.ones(()), persistent=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(frames)
        if self.frontend is not None:
            hidden = self.frontend(hidden, mask)
        return self.classifier(self.pooling(hidden, mask)) / self.temperature


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def predict_logits(model: LidModel, frames: Iterable[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Logits (N, n_labels), float32 on the CPU, divided by the model's temperature, of utterances given
    as (T_i, d_model) tensors.

    ``frames`` is consumed one batch at a time, so a lazy mapping's values
    (:class:`~espnet_adapters.lid.data.CachedFrames`) are never all in memory.
    Puts the model in eval mode (no dropout).
    """
    model.eval()
    device = _device(model)
    stream = iter(frames)
    parts = []
    while batch := list(itertools.islice(stream, batch_size)):
        padded, mask = pad_frames(batch)
        parts.append(model(padded.to(device), mask.to(device)).float().cpu())
    if not parts:
        raise ValueError("no utterances to classify")
    return torch.cat(parts)


def predict_proba(model: LidModel, frames: Iterable[torch.Tensor], batch_size: int) -> torch.Tensor:
    """Posteriors (N, n_labels): the softmax of :func:`predict_logits` (calibrated if the model is)."""
    return torch.softmax(predict_logits(model, frames, batch_size), dim=-1)


def window_posteriors(frames: torch.Tensor, model: LidModel, win_frames: int, hop_frames: int) -> torch.Tensor:
    """Segment-level LID: posteriors (n_windows, n_labels) of sliding windows over (T, d_model) frames.

    Encoder frames are 20 ms, so ``win_frames=100, hop_frames=25`` are 2 s
    windows every 0.5 s; window ``i`` covers frames ``[i*hop, i*hop + win)``
    (see :func:`window_starts`).  Code-switched speech changes language within
    an utterance, which one utterance-level posterior cannot show.
    """
    starts = window_starts(frames.shape[0], win_frames, hop_frames)
    windows = (frames[start : start + win_frames] for start in starts)
    return predict_proba(model, windows, batch_size=len(starts))
