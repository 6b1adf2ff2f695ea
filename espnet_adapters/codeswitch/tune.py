"""Choosing the switch detector's smoothing on dev code-switched sets (select_smoothing).

codeswitch_decode run with no system on a dev code-switched set leaves the
window-level LID posteriors of every utterance (``segments/posteriors``) and its
LID labels (stats.json).  Here each candidate :class:`~.detect.Smoothing` (majority
votes over 1, 3, ... windows; Viterbi with each switch penalty) re-detects the
switches from those posteriors, and :func:`~.report.switch_metrics` scores them
against the set's true switches, pooled over the sets: the candidate with the
highest switch F1 within the tolerance is chosen (ties: the later candidate of the
grid, majority votes by window count, then Viterbi by penalty: within a method,
the more smoothing).  Nothing is decoded: the choice costs no Whisper decoding,
and the test sets are never looked at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from espnet_adapters.codeswitch.detect import Smoothing, detect_spans, switch_times
from espnet_adapters.codeswitch.report import SetPaths, read_stats, switch_metrics
from espnet_adapters.codeswitch.truth import POSTERIORS, SEGMENTS_TRUTH, SWITCHES, read_segments_truth, read_times
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

SEGMENT_DIR = "segments"


@dataclass(frozen=True)
class DevUtterance:
    """What re-detection needs of one dev utterance."""

    windows: np.ndarray  # (n_windows, 1 + n_labels): centre time, posteriors
    duration: float
    switches: list[float]


def read_dev_set(paths: SetPaths) -> tuple[dict[str, DevUtterance], list[str]]:
    """Utterance key (``<set>/<utt>``) -> its posteriors, duration and true switches; the LID labels."""
    labels = read_stats(paths.decode_dir).get("lid", {}).get("labels")
    if not labels:
        raise UserInputError(f"{paths.decode_dir / 'stats.json'}: no lid.labels")
    truth = read_segments_truth(paths.data_dir / SEGMENTS_TRUTH)
    switches = read_times(paths.data_dir / SWITCHES)
    utterances = {}
    for utt, segments in truth.items():
        path = paths.decode_dir / SEGMENT_DIR / POSTERIORS / f"{utt}.npy"
        if not path.is_file():
            raise UserInputError(f"{path}: missing; run codeswitch_decode on {paths.data_dir} first")
        windows = np.load(path)
        if windows.ndim != 2 or windows.shape[1] != 1 + len(labels):
            raise UserInputError(f"{path}: expected (windows, 1 + {len(labels)} labels), got {windows.shape}")
        utterances[f"{paths.name}/{utt}"] = DevUtterance(windows, segments[-1].end, switches.get(utt, []))
    return utterances, labels


def candidates(smooth_windows: Sequence[int], switch_penalties: Sequence[float]) -> list[Smoothing]:
    """Majority votes first, then Viterbi by increasing penalty (ValueError on a bad value)."""
    return ([Smoothing("majority", int(n)) for n in sorted(smooth_windows)]
            + [Smoothing("viterbi", switch_penalty=float(p)) for p in sorted(switch_penalties)])


def evaluate(utterances: Mapping[str, DevUtterance], labels: Sequence[str], smoothing: Smoothing,
             tolerance: float) -> dict[str, Any]:
    """Switch metrics of one candidate on the pooled dev utterances."""
    detected = {}
    for key, utt in utterances.items():
        spans = detect_spans(utt.windows[:, 1:], utt.windows[:, 0], utt.duration, labels, smoothing)
        detected[key] = switch_times(spans)
    truth = {key: utt.switches for key, utt in utterances.items()}
    return switch_metrics(truth, detected, tolerance)


def select_smoothing(sets: Sequence[SetPaths], grid: Sequence[Smoothing], tolerance: float) -> dict[str, Any]:
    """Every candidate's dev switch metrics and the chosen one (highest F1; ties: the later candidate)."""
    if not grid:
        raise UserInputError("no smoothing candidate (--smooth_windows and --switch_penalties are both empty)")
    utterances: dict[str, DevUtterance] = {}
    labels: list[str] | None = None
    for paths in sets:
        found, set_labels = read_dev_set(paths)
        if labels is not None and set_labels != labels:
            raise UserInputError(f"{paths.decode_dir}: LID labels {set_labels} differ from {labels}")
        utterances.update(found)
        labels = set_labels
    assert labels is not None
    rows = [{"smoothing": smoothing.as_dict(), "description": smoothing.describe(),
             **evaluate(utterances, labels, smoothing, tolerance)} for smoothing in grid]
    best = max(range(len(rows)), key=lambda index: (rows[index]["f1"] or 0.0, index))
    return {"tolerance": tolerance, "sets": [str(paths.data_dir) for paths in sets], "utterances": len(utterances),
            "candidates": rows, "chosen": rows[best]["smoothing"], "flags": grid[best].flags()}


def markdown(selection: Mapping[str, Any]) -> str:
    """The dev table of every candidate, the chosen one in bold."""
    tolerance = selection["tolerance"]
    lines = [
        "### Switch detection: smoothing chosen on dev",
        "",
        f"Dev code-switched sets ({selection['utterances']} utterances: "
        f"{', '.join(Path(path).name for path in selection['sets'])}); switches matched one to one within "
        f"{tolerance:g} s; the highest F1 is chosen and used on the test sets.",
        "",
        "|smoothing|detected|precision|recall|F1|delay median (s)|",
        "|---|---|---|---|---|---|",
    ]
    for row in selection["candidates"]:
        name = row["description"]
        if row["smoothing"] == selection["chosen"]:
            name = f"**{name}**"
        cells = [name, str(row["n_detected"])] + [
            "-" if row[key] is None else f"{100 * row[key]:.1f}%" for key in ("precision", "recall", "f1")
        ] + ["-" if row["delay_median"] is None else f"{row['delay_median']:.2f}"]
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


def write_selection(out_dir: Path, selection: Mapping[str, Any]) -> None:
    """smoothing.md, then smoothing.json (last: its presence means both are complete)."""
    with atomic_write(out_dir / "smoothing.md") as handle:
        handle.write(markdown(selection))
    with atomic_write(out_dir / "smoothing.json") as handle:
        json.dump(selection, handle, indent=2)
        handle.write("\n")
