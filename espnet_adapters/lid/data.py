"""The frames a LID model sees: cached encoder outputs cut to the frames that hold speech.

Whisper's encoder always runs on a 30 s window, so a 3 s utterance's cached
output is 150 frames of speech followed by 1350 frames computed from padding.
Those are nearly identical for every utterance and would swamp a mean, so only
the *valid* frames are used: the encoder halves the time axis (stride-2
convolution), and ``feats_shape`` (dump_feats) gives the trimmed log-mel length,
hence ``ceil(frames / 2)`` encoder frames.

A set is named on the command line as ``DATA_DIR:FEATS_DIR:CACHE_DIR`` (see
:func:`parse_set_spec`): the Kaldi dir with ``utt2lang``, the dump_feats dir
with ``feats.scp`` and ``feats_shape``, and the encoder cache computed from
those features, which is checked against them through its fingerprint.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from espnet_adapters.data.kaldi import read_map_lines
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import stack_features

ENCODER_STRIDE = 2  # log-mel frames per encoder frame
LOG_MEL_RANGE = 2.0  # Whisper's log-mel: max - floor after scaling (8 in log10 units, divided by 4)
LOG_MEL_MIN = -1.5  # the lowest floor: (log10(1e-10) + 4) / 4


@dataclass(frozen=True)
class SetSpec:
    """Where one set's labels, features and encoder outputs are."""

    data_dir: Path
    feats_dir: Path
    cache_dir: Path

    @property
    def utt2lang(self) -> Path:
        return self.data_dir / "utt2lang"

    @property
    def feats_scp(self) -> Path:
        return self.feats_dir / "feats.scp"

    @property
    def feats_shape(self) -> Path:
        return self.feats_dir / "feats_shape"


def parse_set_spec(text: str) -> SetSpec:
    """``DATA_DIR:FEATS_DIR:CACHE_DIR`` as an argparse ``type`` (paths must not contain ':')."""
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected DATA_DIR:FEATS_DIR:CACHE_DIR, got {text!r}")
    return SetSpec(*(Path(part) for part in parts))


def valid_encoder_frames(feat_frames: int, max_frames: int) -> int:
    """Encoder frames that see the signal, for ``feat_frames`` trimmed log-mel frames."""
    return min(max_frames, math.ceil(feat_frames / ENCODER_STRIDE))


@torch.inference_mode()
def base_encoder_frames(model: PeftModel, feats: np.ndarray) -> torch.Tensor:
    """The base encoder's frames (T, d_model) of one trimmed log-mel, adapters off: what the LID reads.

    Only the frames that see the signal (:func:`valid_encoder_frames`), float32.
    """
    with model.disable_adapter():
        inputs = stack_features([feats]).to(model.device, model.dtype)
        outputs = model.get_encoder()(input_features=inputs).last_hidden_state[0]
    return outputs[: valid_encoder_frames(len(feats), outputs.shape[0])].float()


def read_feat_frames(feats_shape: Path) -> dict[str, int]:
    """``utt frames,n_mels`` lines -> trimmed log-mel frames per utterance."""
    frames: dict[str, int] = {}
    for utt, (lineno, value) in read_map_lines(feats_shape).items():
        head = value.split(",")[0]
        if not head.isdigit() or int(head) < 1:
            raise UserInputError(f"{feats_shape}:{lineno}: {utt}: expected 'frames,n_mels', got {value!r}")
        frames[utt] = int(head)
    return frames


Entries = dict[str, tuple[EncoderCache, int]]  # utt -> (its cache, its valid encoder frames)


class CachedFrames(Mapping[str, torch.Tensor]):
    """``frames[utt]``: the valid encoder frames of ``utt``, (T, d_model) float32, read on access.

    Reading lazily keeps memory at one batch whatever the set's size: cached
    outputs are memory-mapped, and a real training set's frames would not fit.
    """

    def __init__(self, entries: Entries) -> None:
        self._entries = dict(entries)

    def __getitem__(self, utt: str) -> torch.Tensor:
        cache, valid = self._entries[utt]
        return cache.get(utt)[:valid]

    def encoder_outputs(self, utts: Sequence[str]) -> torch.Tensor:
        """The whole cached outputs (B, 1500, d_model), padding frames included, as Whisper's decoder reads them."""
        return torch.stack([self._entries[utt][0].get(utt) for utt in utts])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class LidSet:
    """Utterances, their languages (``utt2lang``), and their frames (any mapping utt -> (T, D) tensor)."""

    name: str
    utts: list[str]
    langs: list[str]
    frames: Mapping[str, torch.Tensor]
    where: Mapping[str, str] = field(default_factory=dict)  # utt -> "utt2lang:LINE", for messages

    def check_labels(self, labels: Sequence[str]) -> None:
        """Every language of the set must be one the model can answer."""
        unknown = [(utt, lang) for utt, lang in zip(self.utts, self.langs, strict=True) if lang not in labels]
        if unknown:
            utt, lang = unknown[0]
            raise UserInputError(
                f"{self.where.get(utt, self.name)}: {utt}: language {lang} is not a LID label ({', '.join(labels)});"
                f" {len(unknown)} such utterance(s) in {self.name}"
            )


@dataclass
class CachedSet(LidSet):
    """A set read from the recipe's encoder caches (:func:`open_sets`)."""

    frames: CachedFrames


def _set_entries(spec: SetSpec, whisper_model: str) -> tuple[Entries, dict[str, tuple[int, str]]]:
    """One set's frames and languages, every utterance of ``utt2lang`` required in ``feats_shape`` and the cache.

    The cache must have been computed by ``whisper_model`` from exactly these
    features (its fingerprint): a stale cache would give the classifier
    another model's frames without any error.
    """
    utt2lang = read_map_lines(spec.utt2lang)
    feat_frames = read_feat_frames(spec.feats_shape)
    cache = EncoderCache(spec.cache_dir, expected_fingerprint=encoder_fingerprint(whisper_model, spec.feats_scp))
    entries: Entries = {}
    max_frames = 0
    for utt, (lineno, _) in utt2lang.items():
        if utt not in feat_frames:
            raise UserInputError(f"{spec.utt2lang}:{lineno}: {utt} is not in {spec.feats_shape}")
        if utt not in cache:
            raise UserInputError(f"{spec.utt2lang}:{lineno}: {utt} is not in the encoder cache {spec.cache_dir}")
        max_frames = max_frames or cache.get(utt).shape[0]  # the same for every output of a cache
        entries[utt] = (cache, valid_encoder_frames(feat_frames[utt], max_frames))
    if not entries:
        raise UserInputError(f"{spec.utt2lang}: no utterances")
    return entries, utt2lang


def open_sets(specs: Sequence[SetSpec], whisper_model: str) -> CachedSet:
    """Sets pooled into one (the train sets of every language, or a pooled test set)."""
    entries: Entries = {}
    langs: dict[str, str] = {}
    where: dict[str, str] = {}
    for spec in specs:
        part, utt2lang = _set_entries(spec, whisper_model)
        for utt, (lineno, lang) in utt2lang.items():
            if utt in entries:
                raise UserInputError(f"{spec.utt2lang}:{lineno}: utterance {utt} is also in {where[utt]}")
            langs[utt], where[utt] = lang, f"{spec.utt2lang}:{lineno}"
        entries.update(part)
    name = " + ".join(str(spec.data_dir) for spec in specs)
    return CachedSet(name, list(entries), [langs[utt] for utt in entries], CachedFrames(entries), where)


def crop_feats(feats: np.ndarray, n_frames: int) -> np.ndarray:
    """The first ``n_frames`` of trimmed log-mel features, close to the features of the cropped audio.

    Stored features end with one all-padding frame at the matrix floor, so a
    crop gets such a frame back (:func:`pad_logmel` repeats the last frame).
    The floor is the crop's own: Whisper's log-mel is clamped at 8 (log10) below
    its maximum, i.e. ``max - 2`` after the scaling ``(x + 4) / 4``, and not below
    ``-1.5`` (``log10(1e-10)`` scaled); a crop without the loudest part of the
    utterance has a lower maximum, hence a lower floor.  What remains different
    from features of the cut audio: the last frame or two, whose STFT windows
    reach past the cut, and values the whole utterance's floor had clamped.
    Utterances no longer than the crop are returned whole.
    """
    if feats.shape[0] <= n_frames + 1:
        return feats
    head = feats[:n_frames]
    floor = max(float(head.max()) - LOG_MEL_RANGE, LOG_MEL_MIN)
    return np.concatenate([head, np.full((1, feats.shape[1]), floor, dtype=feats.dtype)])


def pad_frames(frames: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of (T_i, D) tensors as (B, T_max, D) zero-padded, and the (B, T_max) mask of real frames."""
    longest = max(item.shape[0] for item in frames)
    batch = frames[0].new_zeros((len(frames), longest, frames[0].shape[1]))
    mask = torch.zeros((len(frames), longest), dtype=torch.bool)
    for row, item in enumerate(frames):
        batch[row, : item.shape[0]] = item
        mask[row, : item.shape[0]] = True
    return batch, mask
