"""Sliding windows over encoder frames for segment-level LID (pure Python: no torch).

:func:`espnet_adapters.lid.models.window_posteriors` classifies these windows;
code-switch detection (``espnet_adapters.codeswitch.detect``) places switches
at their centres without needing the model.
"""

from __future__ import annotations

import math


def window_starts(n_frames: int, win_frames: int, hop_frames: int) -> list[int]:
    """First frames of the windows :func:`~espnet_adapters.lid.models.window_posteriors` classifies.

    Windows start every ``hop_frames`` frames until one reaches the end, so the
    last one may be shorter than ``win_frames``; a signal shorter than one
    window is a single window.
    """
    if win_frames < 1 or hop_frames < 1 or n_frames < 1:
        raise ValueError(f"need frames, win_frames and hop_frames >= 1, got {n_frames}, {win_frames}, {hop_frames}")
    count = 1 + max(0, math.ceil((n_frames - win_frames) / hop_frames))
    return [index * hop_frames for index in range(count)]
