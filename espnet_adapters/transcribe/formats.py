"""The outputs of one transcribed recording: ``NAME.txt``, ``NAME.json``, ``NAME.srt``, ``NAME.vtt``.

JSON (``JSON_FORMAT``)::

    {"format": "espnet-adapters-transcript/1", "file": "...", "duration": 71.2,
     "route": "soft", "text": "...",
     "segments": [{"start": 0.0, "end": 29.1, "text": "...", "language": "hi",
                   "language_probabilities": {"hi": 0.97, "it": 0.01, ...},
                   "adapter_weights": {"hi": 0.97, "it": 0.01, ...}}, ...],
     "lid_timeline": {"seconds": [...], "probabilities": {"hi": [...], ...}}}

``language`` is the language token the segment was decoded with;
``language_probabilities`` the LID's posteriors of the segment (null for
``--route base`` without a LID); ``adapter_weights`` the routing weights
(all zero: the base model); ``lid_timeline`` the LID's sliding-window
posteriors over the whole recording (window centres in seconds).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from espnet_adapters.utils.fileio import atomic_write

JSON_FORMAT = "espnet-adapters-transcript/1"
OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


@dataclass
class Segment:
    start: float
    end: float
    text: str
    language: str | None
    language_probabilities: dict[str, float] | None
    adapter_weights: dict[str, float]


@dataclass
class Transcript:
    file: str
    duration: float
    route: str
    segments: list[Segment]
    lid_timeline: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(segment.text for segment in self.segments if segment.text)

    def as_dict(self) -> dict[str, Any]:
        return {"format": JSON_FORMAT, "file": self.file, "duration": round(self.duration, 3), "route": self.route,
                "text": self.text, "segments": [_rounded(asdict(segment)) for segment in self.segments],
                "lid_timeline": self.lid_timeline, **self.extra}


def _rounded(segment: dict[str, Any]) -> dict[str, Any]:
    for key in ("start", "end"):
        segment[key] = round(segment[key], 3)
    for key in ("language_probabilities", "adapter_weights"):
        if segment[key] is not None:
            segment[key] = {lang: round(float(value), 4) for lang, value in segment[key].items()}
    return segment


def timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS<separator>mmm`` (SRT: ``,``; WebVTT: ``.``)."""
    millis = int(round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(segments: Sequence[Segment], kind: str) -> str:
    """The cues of the segments that have text, as SRT (``srt``) or WebVTT (``vtt``)."""
    separator = "," if kind == "srt" else "."
    blocks = ["WEBVTT\n"] if kind == "vtt" else []
    cues = [segment for segment in segments if segment.text]
    for index, segment in enumerate(cues, start=1):
        times = f"{timestamp(segment.start, separator)} --> {timestamp(segment.end, separator)}"
        blocks.append(f"{index}\n{times}\n{segment.text}\n" if kind == "srt" else f"{times}\n{segment.text}\n")
    return "\n".join(blocks)


def render(transcript: Transcript, kind: str) -> str:
    if kind == "txt":
        return transcript.text + "\n"
    if kind == "json":
        return json.dumps(transcript.as_dict(), ensure_ascii=False, indent=2) + "\n"
    return subtitles(transcript.segments, kind)


def write_transcript(out_dir: Path, name: str, transcript: Transcript, kinds: Sequence[str] = OUTPUT_FORMATS) -> list[Path]:
    """``out_dir/name.<kind>`` for each kind, each written atomically; the paths written."""
    paths = []
    for kind in kinds:
        path = out_dir / f"{name}.{kind}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(render(transcript, kind))
        paths.append(path)
    return paths


def probabilities(labels: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    return {label: float(value) for label, value in zip(labels, values)}
