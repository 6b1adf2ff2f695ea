"""Training runs side by side: the dev curve and cost of each adapter, from its ``train_stats.json``.

Every adapter directory (``exp/<model>_lora_<lang>_<tag>``) leaves a
``train_stats.json`` (see ``trainer.py``): the evaluations (step 0 = the base
model), the best step, the trainable parameters and the seconds spent.  This
module turns a set of them into the tables a lever study needs: one row per run,
dev WER / CER / words correct of the base and of the installed adapter, where the
curve stood at each evaluation, and what it cost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from espnet_adapters.utils.cli import UserInputError


@dataclass(frozen=True)
class RunSummary:
    """One training run, read from its ``train_stats.json``."""

    name: str
    stats: dict[str, Any]

    @property
    def evals(self) -> list[dict[str, float]]:
        return list(self.stats.get("evals", []))

    @property
    def base(self) -> dict[str, float] | None:
        first = self.evals[0] if self.evals else None
        return first if first is not None and first["step"] == 0 else None

    @property
    def best(self) -> dict[str, float] | None:
        step = self.stats.get("best_step")
        if not self.stats.get("adapter", True) or not step:
            return None
        return next((e for e in self.evals if e["step"] == step), None)


def read_run(path: Path) -> RunSummary:
    """``<dir>/train_stats.json`` (or the file itself) as a :class:`RunSummary` named after the dir."""
    path = path / "train_stats.json" if path.is_dir() else path
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserInputError(f"{path}: cannot read ({err.strerror}); has the training finished?") from err
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path}:{err.lineno}: not JSON ({err.msg})") from err
    if not isinstance(stats, dict) or "evals" not in stats:
        raise UserInputError(f"{path}: not a train_stats.json (no 'evals')")
    return RunSummary(path.parent.name, stats)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def runs_table(runs: Sequence[RunSummary]) -> list[str]:
    """Markdown: per run, base and best dev WER / CER / Corr, the best step, parameters and time."""
    lines = [
        "|run|steps|base dev WER / CER / Corr|adapter dev WER / CER / Corr|best step|trainable params|"
        "train s|s/step|",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        base, best, s = run.base, run.best, run.stats

        def triple(e: dict[str, float] | None, missing: str) -> str:
            if e is None:
                return missing
            return f"{_pct(e['dev_wer'])} / {_pct(e['dev_cer'])} / {_pct(e.get('dev_corr'))}"

        lines.append(f"|{run.name}|{s.get('steps', '-')}|{triple(base, '-')}|{triple(best, 'none installed')}|"
                     f"{s.get('best_step', '-')}|"
                     f"{s.get('trainable_params', '-')}|{s.get('train_seconds', '-')}|{s.get('seconds_per_step', '-')}|")
    return lines


def curves_table(runs: Sequence[RunSummary], metric: str = "dev_wer") -> list[str]:
    """Markdown: ``metric`` at every evaluated step (columns), one row per run."""
    steps = sorted({int(e["step"]) for run in runs for e in run.evals})
    lines = ["|run|" + "|".join(str(step) for step in steps) + "|", "|---|" + "---|" * len(steps)]
    for run in runs:
        at = {int(e["step"]): e.get(metric) for e in run.evals}
        lines.append(f"|{run.name}|" + "|".join(_pct(at.get(step)) for step in steps) + "|")
    return lines
