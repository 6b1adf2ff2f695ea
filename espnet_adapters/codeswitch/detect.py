"""Switch detection: where a code-switched utterance changes language, from window-level LID posteriors.

The LID model classifies sliding windows over an utterance's valid encoder
frames.  Each window's label is its argmax, smoothed by a majority vote over
``smooth_windows`` windows centred on it (ties go to the label of larger summed
posterior).  A switch is placed where the smoothed label changes, at the centre
of the first window with the new label: a window takes the new label once most
of its frames are in the new language, i.e. when its centre passes the true
switch, so the centre is the unbiased estimate (up to half a hop).  The switch
points cut the utterance into spans that tile it.

codeswitch_decode saves what it found under the names of
:mod:`espnet_adapters.codeswitch.truth` (``detected``, ``posteriors/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from espnet_adapters.lid.models import window_starts


class Span(NamedTuple):
    """A stretch of an utterance and the language it is decoded in (None: Whisper detects it)."""

    start: float
    end: float
    lang: str | None


def window_centers(n_frames: int, win_frames: int, hop_frames: int, frame_seconds: float) -> np.ndarray:
    """Centre time (s) of each window of :func:`~espnet_adapters.lid.models.window_starts`; the last window may be shorter."""
    starts = window_starts(n_frames, win_frames, hop_frames)
    return np.array([(start + min(win_frames, n_frames - start) / 2) * frame_seconds for start in starts])


def smooth_labels(posteriors: np.ndarray, smooth_windows: int) -> np.ndarray:
    """Majority vote of the window argmaxes over ``smooth_windows`` windows centred on each one.

    A lone window that flips to another language (a noisy window, a loan
    word) is outvoted instead of cutting the utterance into a short segment
    that would be decoded alone.  The neighbourhood is clipped at the ends;
    ties go to the label with the larger summed posterior in it.
    """
    if smooth_windows < 1 or smooth_windows % 2 == 0:
        raise ValueError(f"smooth_windows must be odd and >= 1, got {smooth_windows}")
    labels = posteriors.argmax(axis=1)
    half = smooth_windows // 2
    smoothed = np.empty(len(labels), dtype=np.int64)
    for index in range(len(labels)):
        low, high = max(0, index - half), min(len(labels), index + half + 1)
        votes = np.bincount(labels[low:high], minlength=posteriors.shape[1])
        mass = posteriors[low:high].sum(axis=0)
        smoothed[index] = int(np.argmax(np.where(votes == votes.max(), mass, -np.inf)))
    return smoothed


def detect_spans(
    posteriors: np.ndarray, centers: np.ndarray, duration: float, labels: Sequence[str], smooth_windows: int
) -> list[Span]:
    """Segments between the switch points of the smoothed window labels; they tile [0, duration].

    A switch is at the centre of the first window of the new label (module
    docstring); one at or past the end of the audio (only possible for a last
    window longer than the signal) is dropped.
    """
    smoothed = smooth_labels(posteriors, smooth_windows)
    starts = [(0.0, int(smoothed[0]))]
    for index in range(1, len(smoothed)):
        if smoothed[index] != smoothed[index - 1] and centers[index] < duration:
            starts.append((float(centers[index]), int(smoothed[index])))
    ends = [start for start, _ in starts[1:]] + [duration]
    return [Span(start, end, labels[label]) for (start, label), end in zip(starts, ends, strict=True)]


def switch_times(spans: Sequence[Span]) -> list[float]:
    """Where the language changes between consecutive spans."""
    return [b.start for a, b in zip(spans, spans[1:]) if a.lang != b.lang]
