"""The audio a transcription reads: files and folders, and long recordings cut into windows.

Whisper sees at most 30 s at a time.  A longer recording is cut into windows of
at most ``window_seconds``: each cut is placed at the quietest ``frame_seconds``
stretch (lowest RMS energy) within the last ``search_seconds`` before the
limit, so a cut falls in a pause when there is one (a simple energy VAD; no
word is split across windows unless the speaker never pauses for that long).
Each window is decoded as an utterance of its own and is one segment of the
outputs, with its start and end times.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from espnet_adapters.utils.cli import UserInputError

# What a folder is searched for (case-insensitive); a file named on the command line is read whatever its suffix.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".opus", ".ogg", ".webm")


@dataclass(frozen=True)
class AudioFile:
    """One input: its path and the output name (relative to the output dir, without suffix)."""

    path: Path
    name: str


def find_audio(inputs: Sequence[Path]) -> list[AudioFile]:
    """The audio files of ``inputs`` (files, or folders searched recursively), in a stable order.

    A folder's files keep their path below the folder as output name (``a/b.wav`` ->
    ``a/b``), a file its stem.  Two inputs with one output name are an error.
    """
    found: list[AudioFile] = []
    for given in inputs:
        if given.is_dir():
            files = sorted(path for path in given.rglob("*") if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES)
            if not files:
                raise UserInputError(f"{given}: no audio files ({' '.join(AUDIO_SUFFIXES)}) in this folder")
            found += [AudioFile(path, path.relative_to(given).with_suffix("").as_posix()) for path in files]
        elif given.exists():
            found.append(AudioFile(given, given.stem))
        else:
            raise UserInputError(f"{given}: no such file or folder")
    names: dict[str, Path] = {}
    for item in found:
        if item.name in names:
            raise UserInputError(f"{names[item.name]} and {item.path} would both write {item.name}.*: "
                                 "transcribe them into different --out_dir")
        names[item.name] = item.path
    return found


def frame_energies(audio: np.ndarray, frame: int) -> np.ndarray:
    """RMS energy of consecutive ``frame``-sample frames (the last partial frame dropped)."""
    count = len(audio) // frame
    frames = audio[: count * frame].reshape(count, frame).astype(np.float64)
    return np.sqrt((frames ** 2).mean(axis=1))


def split_windows(
    audio: np.ndarray, rate: int, window_seconds: float = 30.0, search_seconds: float = 5.0,
    frame_seconds: float = 0.1,
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` covering ``audio``, each at most ``window_seconds`` long (see the module doc)."""
    if not 0 < search_seconds < window_seconds:
        raise ValueError(f"need 0 < search_seconds < window_seconds, got {search_seconds} and {window_seconds}")
    limit, search, frame = (int(round(value * rate)) for value in (window_seconds, search_seconds, frame_seconds))
    windows, start = [], 0
    while len(audio) - start > limit:
        low = start + limit - search
        energies = frame_energies(audio[low : start + limit], frame)
        quietest = int(np.argmin(energies)) if len(energies) else 0
        # Cut in the middle of the quietest frame.
        cut = low + quietest * frame + frame // 2
        windows.append((start, cut))
        start = cut
    windows.append((start, len(audio)))
    return windows


def expand_paths(values: Iterable[str]) -> list[Path]:
    """Command-line strings to paths (``~`` expanded)."""
    return [Path(os.path.expanduser(value)) for value in values]
