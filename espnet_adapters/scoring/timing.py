"""The recipe's wall time per stage (``exp/log/timing.tsv``) as a Markdown table.

``timing.tsv`` has a header ``run_started  stage  seconds  status`` and one row per stage
that a ``./run.sh`` invocation entered (written by ``stage_clock_close`` in the recipe's
``lib.sh``); a stage found up to date takes about 0 s.  The table has one row per
invocation, one column per stage, and the total, so that a results file says what its
rows cost, including the stages done by earlier invocations of a resumed run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from espnet_adapters.utils.cli import UserInputError

HEADER = ("run_started", "stage", "seconds", "status")


@dataclass
class StageTime:
    """One row of timing.tsv."""

    run_started: str
    stage: int
    seconds: int
    status: str


def read_timing(path: Path) -> list[StageTime]:
    """The rows of ``path``; a malformed row is an error naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: cannot read ({err})") from err
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise UserInputError(f"{path}:1: expected the header {' '.join(HEADER)!r}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 4 or not fields[1].isdigit() or not fields[2].isdigit() or fields[3] not in ("ok", "failed"):
            raise UserInputError(f"{path}:{number}: expected run_started, stage, seconds, ok|failed; got {line!r}")
        rows.append(StageTime(fields[0], int(fields[1]), int(fields[2]), fields[3]))
    return rows


def _duration(seconds: int) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"{minutes}:{sec:02d}" if minutes else f"{sec} s"


def render_timing(rows: list[StageTime], source: str) -> str:
    """A '## Wall time' section: invocations as rows, stages as columns (m:ss), a total."""
    if not rows:
        return ""
    stages = sorted({row.stage for row in rows})
    runs: dict[str, dict[int, StageTime]] = {}
    for row in rows:
        runs.setdefault(row.run_started, {})[row.stage] = row
    lines = [
        "## Wall time",
        "",
        f"Per `./run.sh` invocation of this recipe dir (`{source}`): wall time of each stage it entered "
        "(m:ss; a stage found up to date takes ~0 s, its time is in the invocation that did it; "
        "\"failed\": the invocation ended in that stage). The invocation that writes this file "
        "is still in its last stage, which is not listed.",
        "",
        "|run started|" + "|".join(f"stage {stage}" for stage in stages) + "|total|",
        "|---|" + "---|" * (len(stages) + 1),
    ]
    for started, by_stage in runs.items():
        cells = []
        for stage in stages:
            row = by_stage.get(stage)
            cells.append("" if row is None else _duration(row.seconds) + (" failed" if row.status == "failed" else ""))
        total = sum(row.seconds for row in by_stage.values())
        lines.append(f"|{started}|" + "|".join(cells) + f"|{_duration(total)}|")
    return "\n".join(lines) + "\n"
