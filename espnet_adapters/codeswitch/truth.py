"""The truth of a code-switched set, and the files of its decoding that the report reads.

make_codeswitch writes, into the Kaldi dir of a code-switched set:
  segments_truth  ``utt start end lang srcutt``: one line per constituent, in time order;
                  the segments tile the utterance (a pause between two constituents is
                  split in half)
  switches        ``utt t1 t2 ...``: the true switch times (s), where two segments of
                  different languages meet

codeswitch_decode writes the same two layouts for what it found, per system
directory (``hyp_segments``; ``detected``: the detected switch times), and the
window-level LID posteriors (``posteriors/<utt>.npy``: window centre, then one
posterior per LID label); codeswitch_report reads both sides back.  No torch
here: the report needs none.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from espnet_adapters.data.kaldi import read_map_lines, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

SEGMENTS_TRUTH = "segments_truth"
SWITCHES = "switches"
DETECTED = "detected"
POSTERIORS = "posteriors"


@dataclass(frozen=True)
class TruthSegment:
    """One constituent of a code-switched utterance: where it lies, its language, where it came from."""

    start: float
    end: float
    lang: str
    source: str


def format_time(seconds: float) -> str:
    """Seconds to 0.1 ms: finer than a sample period's effect on any metric here, and awk-safe."""
    return f"{seconds:.4f}"


def write_segment_table(path: Path, rows: Iterable[tuple[str, float, float, str, str]]) -> None:
    """``utt start end lang rest`` lines (several per utterance), sorted by utterance then time, atomically.

    Not a Kaldi map (an utterance has one line per segment), hence not
    :func:`~espnet_adapters.data.kaldi.write_map`; ``rest`` may hold spaces (a hypothesis).
    """
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    with atomic_write(path) as handle:
        for utt, start, end, lang, rest in ordered:
            handle.write(f"{utt} {format_time(start)} {format_time(end)} {lang} {rest}".rstrip(" ") + "\n")


def read_segments_truth(path: Path) -> dict[str, list[TruthSegment]]:
    """``segments_truth`` -> utterance -> its constituents in time order; malformed lines name file:line."""
    if not path.is_file():
        raise UserInputError(f"{path}: missing; the data dir was not made by make_codeswitch")
    table: dict[str, list[TruthSegment]] = defaultdict(list)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        try:
            utt, start, end, lang, source = fields[0], float(fields[1]), float(fields[2]), fields[3], fields[4]
            well_formed = len(fields) == 5 and 0 <= start < end
        except (IndexError, ValueError):
            well_formed = False
        if not well_formed:
            raise UserInputError(f"{path}:{lineno}: expected 'utt start end lang srcutt' with 0 <= start < end")
        previous = table[utt][-1].end if table[utt] else 0.0
        if abs(start - previous) > 1e-3:
            raise UserInputError(f"{path}:{lineno}: {utt}: starts at {start}, the previous segment ends at {previous}")
        table[utt].append(TruthSegment(start, end, lang, source))
    return dict(table)


def read_times(path: Path) -> dict[str, list[float]]:
    """``utt t1 t2 ...`` (``switches``, ``detected``): increasing times; an utterance may have none."""
    times: dict[str, list[float]] = {}
    for utt, (lineno, value) in read_map_lines(path, allow_empty_value=True).items():
        try:
            values = [float(field) for field in value.split()]
        except ValueError as err:
            raise UserInputError(f"{path}:{lineno}: {utt}: expected times in seconds ({err})") from err
        if any(later <= earlier for earlier, later in itertools.pairwise(values)):
            raise UserInputError(f"{path}:{lineno}: {utt}: times must increase")
        times[utt] = values
    return times


def write_times(path: Path, times: Mapping[str, Sequence[float]]) -> None:
    """The inverse of :func:`read_times`."""
    write_map(path, {utt: " ".join(format_time(t) for t in values) for utt, values in times.items()})
