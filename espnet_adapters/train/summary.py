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
from espnet_adapters.utils.plots import pyplot_module, save_figure


@dataclass(frozen=True)
class RunSummary:
    """One training run, read from its ``train_stats.json``."""

    name: str
    stats: dict[str, Any]
    path: Path | None = None  # the train_stats.json read (its dir holds adapter/)

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
    return RunSummary(path.parent.name, stats, path)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def adapter_megabytes(run_dir: Path) -> float | None:
    """Size on disk of the installed adapter (``<run>/adapter/``, every file); None if none was installed."""
    adapter = run_dir / "adapter"
    if not adapter.is_dir():
        return None
    return sum(path.stat().st_size for path in adapter.rglob("*") if path.is_file()) / 2**20


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def runs_table(runs: Sequence[RunSummary]) -> list[str]:
    """Markdown: per run, base and best dev WER / CER / Corr, the best step, and what it cost
    (trainable parameters, adapter size on disk, peak training memory, time)."""
    lines = [
        "|run|train utts|steps|base dev WER / CER / Corr|adapter dev WER / CER / Corr|best step|trainable params|"
        "adapter MB|peak memory MB|train s|s/step|",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        base, best, s = run.base, run.best, run.stats

        def triple(e: dict[str, float] | None, missing: str) -> str:
            if e is None:
                return missing
            return f"{_pct(e['dev_wer'])} / {_pct(e['dev_cer'])} / {_pct(e.get('dev_corr'))}"

        size = adapter_megabytes(run.path.parent) if run.path is not None else None
        lines.append(f"|{run.name}|{_number(s.get('train_utts'))}|{s.get('steps', '-')}|{triple(base, '-')}|"
                     f"{triple(best, 'none installed')}|{s.get('best_step', '-')}|"
                     f"{s.get('trainable_params', '-')}|{_number(size)}|{_number(s.get('peak_memory_mb'), 0)}|"
                     f"{s.get('train_seconds', '-')}|{s.get('seconds_per_step', '-')}|")
    return lines


def curves_table(runs: Sequence[RunSummary], metric: str = "dev_wer") -> list[str]:
    """Markdown: ``metric`` at every evaluated step (columns), one row per run."""
    steps = sorted({int(e["step"]) for run in runs for e in run.evals})
    lines = ["|run|" + "|".join(str(step) for step in steps) + "|", "|---|" + "---|" * len(steps)]
    for run in runs:
        at = {int(e["step"]): e.get(metric) for e in run.evals}
        lines.append(f"|{run.name}|" + "|".join(_pct(at.get(step)) for step in steps) + "|")
    return lines


def scaling_points(runs: Sequence[RunSummary]) -> dict[str, list[tuple[int, dict[str, float]]]]:
    """Per language, (training utterances, the installed adapter's dev evaluation) sorted by size;
    a run that installed no adapter contributes its base evaluation (the adapter did not beat it)."""
    points: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for run in runs:
        lang, utts = run.stats.get("lang"), run.stats.get("train_utts")
        if not isinstance(lang, str) or not isinstance(utts, int):
            where = run.path if run.path is not None else run.name
            raise UserInputError(f"{where}: no 'lang' / 'train_utts' (written by an older trainer): cannot place "
                                 "it on a data-scaling curve")
        chosen = run.best or run.base
        if chosen is not None:
            points.setdefault(lang, []).append((utts, chosen))
    return {lang: sorted(values, key=lambda item: item[0]) for lang, values in sorted(points.items())}


def plot_scaling(runs: Sequence[RunSummary], path: Path) -> None:
    """PNG: dev WER, CER and words correct of the installed adapter against training utterances (log x),
    one line per language, the base model's dev value dotted."""
    points = scaling_points(runs)
    fig, axes = pyplot_module().subplots(1, 3, figsize=(13, 4.0))
    for ax, (metric, label) in zip(axes, (("dev_wer", "dev WER %"), ("dev_cer", "dev CER %"),
                                          ("dev_corr", "dev words correct %"))):
        for lang, values in points.items():
            line, = ax.plot([u for u, _ in values], [e.get(metric, math.nan) for _, e in values], "o-", label=lang)
            bases = [run.base[metric] for run in runs if run.stats.get("lang") == lang and run.base is not None
                     and metric in run.base]
            if bases:
                ax.axhline(bases[0], color=line.get_color(), ls=":", lw=0.8)
        ax.set_xscale("log", base=2)
        sizes = sorted({utts for values in points.values() for utts, _ in values})
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training utterances")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(title="language (dotted: base)")
    fig.suptitle("Data scaling: the installed adapter on dev")
    save_figure(fig, path, dpi=110)


def scaling_table(runs: Sequence[RunSummary]) -> list[str]:
    """Markdown: rows = languages, columns = training utterances, cells = dev WER / CER / Corr."""
    points = scaling_points(runs)
    sizes = sorted({utts for values in points.values() for utts, _ in values})
    lines = ["|lang|" + "|".join(str(size) for size in sizes) + "|", "|---|" + "---|" * len(sizes)]
    for lang, values in points.items():
        at = dict(values)
        cells = [f"{_pct(at[size]['dev_wer'])} / {_pct(at[size]['dev_cer'])} / {_pct(at[size].get('dev_corr'))}"
                 if size in at else "-" for size in sizes]
        lines.append(f"|{lang}|" + "|".join(cells) + "|")
    return lines
