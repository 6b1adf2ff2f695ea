"""Whisper log-mel features, stored trimmed and restored bit for bit.

Whisper always sees a 30 s window: the audio is zero-padded to 480000 samples
and turned into an (n_mels, 3000) float32 log-mel matrix, about 1 MB per
utterance whatever its length.  Most of it is padding, and padding frames carry
no information: a frame whose samples are all zeros has mel power 0, so after
``log10(max(p, 1e-10))``, the clamp at ``max - 8`` and the scaling ``(x + 4) / 4``
every one of its values is the same number, the matrix's floor.  That floor
depends on the whole matrix (``max - 2`` after scaling, or ``-1.5`` when the
signal is so quiet that ``max - 8`` is below ``log10(1e-10)``), so it cannot be
recomputed from a constant; instead the first all-padding frame is stored too,
and restoring repeats it.  The result is identical to the extractor's output,
not merely close: ``floor`` computed from the stored maximum can be 1 ulp off.

Which frames see the signal: the STFT is centred (``n_fft // 2`` samples of
padding on each side), so frame ``t`` covers samples ``[t*hop - n_fft/2,
t*hop + n_fft/2)`` and touches the first ``n`` samples iff ``t*hop - n_fft/2 < n``,
i.e. for ``t < ceil((n + n_fft/2) / hop)``.  Stored frames are those plus one
all-padding frame, capped at 3000.  The features are computed by calling the
extractor itself on the audio, so they are whatever transformers computes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm
from transformers import WhisperFeatureExtractor

from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir
from espnet_adapters.whisper.model import load_feature_extractor

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FRAMES = 3000  # Whisper's 30 s window at a 10 ms hop


def signal_frames(n_samples: int, extractor: WhisperFeatureExtractor) -> int:
    """How many frames of the padded log-mel depend on ``n_samples`` samples (see module doc)."""
    half = extractor.n_fft // 2
    return -(-(n_samples + half) // extractor.hop_length)


def logmel(audio: np.ndarray, extractor: WhisperFeatureExtractor, *, where: str = "audio") -> np.ndarray:
    """The trimmed log-mel of 16 kHz ``audio``: (frames, n_mels) float32, Kaldi orientation.

    ``where`` names the utterance (``wav.scp:LINE``) in the error raised for
    audio longer than Whisper's window, which the extractor would silently cut.
    """
    if extractor.dither != 0.0:
        raise ValueError("a dithering feature extractor makes padding frames random; they cannot be trimmed")
    if audio.ndim != 1:
        raise ValueError(f"{where}: expected mono audio, got shape {audio.shape}")
    if len(audio) > extractor.n_samples:
        raise UserInputError(
            f"{where}: {len(audio) / SAMPLE_RATE:.2f} s of audio is longer than Whisper's"
            f" {extractor.n_samples / SAMPLE_RATE:.0f} s window; segment it (stage 2 drops such utterances)"
        )
    full = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
    frames = min(full.shape[1], signal_frames(len(audio), extractor) + 1)
    return np.ascontiguousarray(full[:, :frames].T, dtype=np.float32)


def pad_logmel(feats: np.ndarray, n_frames: int = N_FRAMES) -> np.ndarray:
    """Restore the extractor's (n_mels, n_frames) matrix from trimmed (frames, n_mels) features.

    The last stored frame is an all-padding frame whenever frames < n_frames,
    so repeating it reproduces the padding exactly.
    """
    if feats.ndim != 2 or not 0 < feats.shape[0] <= n_frames:
        raise ValueError(f"expected trimmed features of shape (1..{n_frames}, n_mels), got {feats.shape}")
    padded = np.pad(feats, ((0, n_frames - feats.shape[0]), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded.T, dtype=np.float32)


def stack_features(feats: Sequence[np.ndarray]) -> torch.Tensor:
    """A batch of trimmed features as the (B, n_mels, 3000) float32 tensor Whisper takes."""
    return torch.from_numpy(np.stack([pad_logmel(f) for f in feats]))


def job_keys(keys_file: Path | None, listed: Mapping[str, object], listing: Path) -> list[str]:
    """The utterances of one job: those of ``keys_file`` (first column), or all of ``listing``.

    A key that ``listing`` (the scp read into ``listed``) lacks is an error: a
    silently skipped utterance would vanish from hyps, features or the cache.
    """
    if keys_file is None:
        return list(listed)
    keys = list(read_map(keys_file, allow_empty_value=True))
    for utt in keys:
        if utt not in listed:
            raise UserInputError(f"{keys_file}: utterance {utt} is not in {listing}")
    return keys


def iter_audio_logmel(
    data_dir: Path, keys_file: Path | None, extractor: WhisperFeatureExtractor
) -> Iterator[tuple[str, np.ndarray, float]]:
    """``(utt, trimmed log-mel, audio seconds)`` for the job's utterances of ``data_dir/wav.scp``."""
    wav_scp_path = data_dir / "wav.scp"
    wav_scp = read_map_lines(wav_scp_path)
    for utt in job_keys(keys_file, wav_scp, wav_scp_path):
        lineno, entry = wav_scp[utt]
        where = f"{wav_scp_path}:{lineno}"
        audio = read_audio(entry, SAMPLE_RATE, where)
        yield utt, logmel(audio, extractor, where=where), len(audio) / SAMPLE_RATE


def dump_features(data_dir: Path, keys_file: Path | None, whisper_model: str, out_dir: Path) -> None:
    """Store the trimmed log-mel of the job's utterances: ``out_dir/{feats.ark,feats.scp,feats_shape}``, atomically.

    Only the feature extractor of ``whisper_model`` is loaded, never its weights.
    """
    extractor = load_feature_extractor(whisper_model)
    shapes: dict[str, str] = {}
    seconds = 0.0
    with atomic_dir(out_dir) as tmp:
        ark, scp = tmp / "feats.ark", tmp / "feats.scp"
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            items = iter_audio_logmel(data_dir, keys_file, extractor)
            for utt, feats, duration in tqdm(items, desc=f"feats {data_dir.name}", mininterval=10):
                writer(utt, feats)
                shapes[utt] = f"{feats.shape[0]},{feats.shape[1]}"
                seconds += duration
        # The writer's scp holds the temp dir's path: point it at the final location.
        final_ark = str(out_dir.resolve() / "feats.ark")
        write_map(scp, {utt: value.replace(str(ark), final_ark) for utt, value in read_map(scp).items()})
        write_map(tmp / "feats_shape", shapes)
        size = ark.stat().st_size
    logger.info(
        "%s: %d utterances, %.1f s of audio, %.0f kB of features per utterance",
        out_dir, len(shapes), seconds, size / max(len(shapes), 1) / 1000,
    )


def iter_feats_scp(feats_scp: Path, keys: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """``(utt, trimmed log-mel)`` for ``keys`` (see :func:`job_keys`) from a dump_feats ``feats.scp``."""
    scp = read_map_lines(feats_scp)
    for utt in keys:
        if utt not in scp:
            raise UserInputError(f"{feats_scp}: no features for utterance {utt}")
        lineno, entry = scp[utt]
        try:
            feats = kaldiio.load_mat(entry)
        except (OSError, ValueError) as err:
            raise UserInputError(f"{feats_scp}:{lineno}: cannot read {entry} ({err})") from err
        if feats.ndim != 2 or not 0 < feats.shape[0] <= N_FRAMES:
            raise UserInputError(f"{feats_scp}:{lineno}: {utt}: shape {feats.shape} is not trimmed Whisper log-mel")
        yield utt, feats.astype(np.float32, copy=False)
