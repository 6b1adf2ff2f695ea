"""Switch detection: where a code-switched utterance changes language, from window-level LID posteriors.

The LID model classifies sliding windows over an utterance's valid encoder
frames.  The window labels are smoothed (:class:`Smoothing`) in one of two ways:

majority
    each window's argmax, replaced by the majority vote over ``smooth_windows``
    windows centred on it (ties go to the label of larger summed posterior);
viterbi
    the best label sequence of a hidden Markov model whose states are the
    languages: the log posteriors are the emission scores and every change of
    state costs ``switch_penalty`` (nats), so a switch is kept only where the
    evidence for the new language over the following windows outweighs the
    penalty (a penalty of 0 gives the argmaxes).  The penalty is chosen on dev
    (:mod:`espnet_adapters.codeswitch.tune`).

A switch is placed where the smoothed label changes, at the centre of the
first window with the new label: a window takes the new label once most of
its frames are in the new language, i.e. when its centre passes the true
switch, so the centre is the unbiased estimate (up to half a hop).  The switch
points cut the utterance into spans that tile it.

codeswitch_decode saves what it found under the names of
:mod:`espnet_adapters.codeswitch.truth` (``detected``, ``posteriors/``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from espnet_adapters.lid.windows import window_starts


class Span(NamedTuple):
    """A stretch of an utterance and the language it is decoded in (None: Whisper detects it)."""

    start: float
    end: float
    lang: str | None


def window_centers(n_frames: int, win_frames: int, hop_frames: int, frame_seconds: float) -> np.ndarray:
    """Centre time (s) of each window of :func:`~espnet_adapters.lid.windows.window_starts`; the last window may be shorter."""
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


def viterbi_labels(posteriors: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The most likely label sequence when each window's log posterior scores its label and a change costs the penalty.

    Ties keep the current label (no switch without evidence).
    """
    if switch_penalty < 0:
        raise ValueError(f"switch_penalty must be >= 0, got {switch_penalty}")
    log_post = np.log(np.clip(posteriors.astype(np.float64), 1e-10, None))
    n_windows, n_labels = log_post.shape
    back = np.zeros((n_windows, n_labels), dtype=np.int64)
    score = log_post[0].copy()
    states = np.arange(n_labels)
    for index in range(1, n_windows):
        best = int(np.argmax(score))
        switched = score[best] - switch_penalty
        stay = score >= switched
        back[index] = np.where(stay, states, best)
        score = np.where(stay, score, switched) + log_post[index]
    path = np.empty(n_windows, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for index in range(n_windows - 1, 0, -1):
        path[index - 1] = back[index, path[index]]
    return path


METHODS = ("majority", "viterbi")


@dataclass(frozen=True)
class Smoothing:
    """How window labels are smoothed before switches are placed (module docstring)."""

    method: str = "majority"
    smooth_windows: int = 5
    switch_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"smoothing method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.smooth_windows < 1 or self.smooth_windows % 2 == 0:
            raise ValueError(f"smooth_windows must be odd and >= 1, got {self.smooth_windows}")
        if self.switch_penalty < 0:
            raise ValueError(f"switch_penalty must be >= 0, got {self.switch_penalty}")

    def labels(self, posteriors: np.ndarray) -> np.ndarray:
        """The smoothed label index of every window."""
        if self.method == "viterbi":
            return viterbi_labels(posteriors, self.switch_penalty)
        return smooth_labels(posteriors, self.smooth_windows)

    def describe(self) -> str:
        if self.method == "viterbi":
            return f"viterbi, switch penalty {self.switch_penalty:g}"
        return f"majority of {self.smooth_windows} windows"

    def flags(self) -> list[str]:
        """The command-line flags (:func:`add_smoothing_arguments`) that give this smoothing."""
        if self.method == "viterbi":
            return ["--smoothing", self.method, "--switch_penalty", f"{self.switch_penalty:g}"]
        return ["--smoothing", self.method, "--smooth_windows", str(self.smooth_windows)]

    def as_dict(self) -> dict[str, float | int | str]:
        if self.method == "viterbi":
            return {"method": self.method, "switch_penalty": self.switch_penalty}
        return {"method": self.method, "smooth_windows": self.smooth_windows}


def add_smoothing_arguments(parser: argparse.ArgumentParser) -> None:
    """``--smoothing``, ``--smooth_windows``, ``--switch_penalty``: one :class:`Smoothing`."""
    parser.add_argument("--smoothing", choices=METHODS, default="majority",
                        help="How window labels are smoothed: majority vote, or Viterbi with a switch penalty.")
    parser.add_argument("--smooth_windows", type=int, default=5, help="majority: vote over this many windows (odd).")
    parser.add_argument("--switch_penalty", type=float, default=0.0,
                        help="viterbi: the cost (nats of log posterior) of a change of language.")


def smoothing_from_args(args: argparse.Namespace) -> Smoothing:
    """The :class:`Smoothing` of :func:`add_smoothing_arguments`' flags (ValueError on a bad value)."""
    return Smoothing(args.smoothing, args.smooth_windows, args.switch_penalty)


def detect_spans(
    posteriors: np.ndarray, centers: np.ndarray, duration: float, labels: Sequence[str],
    smoothing: Smoothing,
) -> list[Span]:
    """Segments between the switch points of the smoothed window labels; they tile [0, duration].

    A switch is at the centre of the first window of the new label (module
    docstring); one at or past the end of the audio (only possible for a last
    window longer than the signal) is dropped.
    """
    smoothed = smoothing.labels(posteriors)
    starts = [(0.0, int(smoothed[0]))]
    for index in range(1, len(smoothed)):
        if smoothed[index] != smoothed[index - 1] and centers[index] < duration:
            starts.append((float(centers[index]), int(smoothed[index])))
    ends = [start for start, _ in starts[1:]] + [duration]
    return [Span(start, end, labels[label]) for (start, label), end in zip(starts, ends, strict=True)]


def switch_times(spans: Sequence[Span]) -> list[float]:
    """Where the language changes between consecutive spans."""
    return [b.start for a, b in zip(spans, spans[1:]) if a.lang != b.lang]
