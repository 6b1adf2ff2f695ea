"""The uncertain subset: where routing strategies differ, i.e. where the LID is unsure.

An utterance is *uncertain* when its top LID posterior (renormalised over the
adapters) is below the threshold strategy's τ chosen on dev: exactly the
utterances that threshold routing mixes.  On that subset every strategy's WER
and CER is computed from its ``score/per_utt.tsv``, and the difference to hard
routing gets a paired bootstrap 95% interval (utterances resampled, the same
resamples for every strategy): "soft beats hard where the LID is unsure" is a
claim about this table.  Oracle is listed as the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from espnet_adapters.routing.posteriors import read_posteriors
from espnet_adapters.scoring.bootstrap import paired_bootstrap
from espnet_adapters.scoring.per_utt import PerUttCounts, paired_counts, read_per_utt

HARD = "hard"


def _rate(counts: PerUttCounts, unit: str, mask: np.ndarray) -> float:
    ref = counts.column(unit, "ref")[mask].sum()
    return float("nan") if ref == 0 else 100.0 * counts.column(unit, "errors")[mask].sum() / ref


def render_uncertain(
    routing_dir: Path, strategies: Sequence[str], posteriors: Path, langs: Sequence[str], tau: float,
) -> list[str]:
    """'### The uncertain subset' (markdown lines); empty when hard routing was not scored."""
    hard_path = routing_dir / HARD / "score" / "per_utt.tsv"
    if not hard_path.is_file():
        return []
    hard = read_per_utt(hard_path)
    probabilities = read_posteriors(posteriors, list(hard.utt_ids), langs).numpy()
    top = probabilities.max(axis=1) / probabilities.sum(axis=1)
    mask = top < tau
    count = int(mask.sum())
    lines = [f"### The uncertain subset (top LID posterior < τ = {tau:g}, the threshold chosen on dev)", "",
             f"{count} of {len(mask)} test utterances. WER / CER in % on them; change vs hard routing in points "
             "with the paired bootstrap 95% interval.", ""]
    if count == 0:
        return lines + ["No utterance is uncertain at this τ: the strategies that mix cannot differ from hard here.",
                        ""]
    lines += ["|strategy|WER|Δ WER vs hard [95% CI]|CER|Δ CER vs hard [95% CI]|", "|---|---|---|---|---|"]
    for strategy in strategies:
        path = routing_dir / strategy / "score" / "per_utt.tsv"
        if not path.is_file():
            continue
        base, system = paired_counts(hard, read_per_utt(path))
        cells = []
        for unit in ("word", "char"):
            comparison = paired_bootstrap(base.column(unit, "ref")[mask], base.column(unit, "errors")[mask],
                                          system.column(unit, "errors")[mask])
            interval = comparison.difference
            change = "–" if strategy == HARD else (
                f"{interval.estimate:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}]"
                + (" *" if interval.excludes_zero else ""))
            cells += [f"{_rate(system, unit, mask):.1f}", change]
        lines.append(f"|{strategy}|" + "|".join(cells) + "|")
    return lines + ["", "\\* the interval excludes 0.", ""]
