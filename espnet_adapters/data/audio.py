"""Reading the audio a Kaldi ``wav.scp`` points to, whatever form the entry takes.

An entry is one of: a file path (wav/flac/mp3/ogg/opus through libsndfile; m4a and
other containers libsndfile cannot open through ffmpeg), a command ending in ``|``
whose standard output is an audio file, or a kaldiio extended filename
(``dump/audio/x/wav.ark:123``).  Everything comes back as mono float32 in [-1, 1]
at the sample rate the caller asks for, so no later stage cares which corpus the
audio came from.  Failures raise :class:`UserInputError` naming the entry.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import soundfile as sf
import soxr

from espnet_adapters.data.kaldi import ark_file
from espnet_adapters.utils.cli import UserInputError

# Containers libsndfile does not read; decoded with ffmpeg instead.
FFMPEG_SUFFIXES = {".m4a", ".mp4", ".aac", ".webm", ".wma"}


def _to_mono_float(audio: np.ndarray) -> np.ndarray:
    """Average channels and scale integer PCM to [-1, 1]."""
    if np.issubdtype(audio.dtype, np.integer):
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max + 1)
    audio = audio.astype(np.float32, copy=False)
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def _decode_bytes(data: bytes, where: str) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise UserInputError(f"{where}: cannot decode audio ({err})") from err
    return audio, rate


def _run(cmd: list[str] | str, where: str, shell: bool) -> bytes:
    result = subprocess.run(cmd, shell=shell, capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise UserInputError(f"{where}: command failed ({message[-1] if message else 'no output'})")
    return result.stdout


def _read_entry(entry: str, where: str) -> tuple[np.ndarray, int]:
    entry = entry.strip()
    if entry.endswith("|"):
        return _decode_bytes(_run(entry[:-1], where, shell=True), where)
    if ark_file(entry) is not None and not Path(entry).is_file():
        try:
            rate, audio = kaldiio.load_mat(entry)
        except (OSError, ValueError) as err:
            raise UserInputError(f"{where}: cannot read {entry} ({err})") from err
        return audio, rate
    path = Path(entry)
    if not path.is_file():
        raise UserInputError(f"{where}: audio file not found: {entry}")
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        if shutil.which("ffmpeg") is None:
            raise UserInputError(f"{where}: {path.suffix} needs ffmpeg (tools/install.sh installs it)")
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", entry, "-f", "wav", "-"]
        return _decode_bytes(_run(cmd, where, shell=False), where)
    try:
        audio, rate = sf.read(entry, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise UserInputError(f"{where}: cannot decode {entry} ({err})") from err
    return audio, rate


def read_audio(entry: str, fs: int, where: str) -> np.ndarray:
    """Read a ``wav.scp`` value as mono float32 at ``fs`` Hz.

    Args:
        entry: the value column of a ``wav.scp`` line.
        fs: the sample rate wanted; other rates are resampled with soxr (HQ).
        where: ``file:line`` of the entry, for error messages.
    """
    audio, rate = _read_entry(entry, where)
    audio = _to_mono_float(np.asarray(audio))
    if audio.size == 0:
        raise UserInputError(f"{where}: empty audio")
    if not np.all(np.isfinite(audio)):
        raise UserInputError(f"{where}: audio contains NaN or infinite samples")
    if rate != fs:
        audio = soxr.resample(audio, rate, fs, quality="HQ").astype(np.float32, copy=False)
    return audio
