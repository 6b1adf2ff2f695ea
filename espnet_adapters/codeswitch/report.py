"""The code-switching report: WER per system, degradation vs single-language, switch detection.

Each set pairs a make_codeswitch dir (one kind: inter or rapid) with its
codeswitch_decode output; the set is named after the data dir.  For every
system of the decoding (stats.json):

WER / CER
    with score.py's normaliser and alignments (espnet_adapters.scoring), against
    the concatenated reference; the normaliser is given the utterance's utt2lang
    language.  A missing hypothesis is scored as empty.
Degradation vs single-language
    the same constituents decoded one at a time: the single-language hyp files
    are keyed by the constituents' ids (segments_truth's srcutt).  Each
    code-switched utterance's single-language hypothesis is its constituents'
    hypotheses joined in the same order, scored against the same reference;
    degradation = 100 * (WER_cs - WER_single) / WER_single (relative, %).
Switch detection (systems with a ``detected`` file)
    :func:`switch_metrics`: true and detected switches matched one to one within
    the tolerance; precision, recall, F1, misses, false alarms, delay of the hits.

The outputs (result.txt per set and system, posteriors.png, codeswitch.md,
results.json) are listed in ``python -m espnet_adapters.bin.codeswitch_report --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from espnet_adapters.codeswitch.detect import Smoothing
from espnet_adapters.codeswitch.truth import (
    DETECTED, POSTERIORS, SEGMENTS_TRUTH, SWITCHES, read_segments_truth, read_times,
)
from espnet_adapters.data.kaldi import read_map, read_map_lines
from espnet_adapters.utils.plots import pyplot_module, save_figure
from espnet_adapters.scoring.metrics import ScoreReport, score_chars, score_words, write_result_txt
from espnet_adapters.scoring.normalize import NORMALIZER_VERSION, normalize_text
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pure metrics


def match_switches(true_times: Sequence[float], found: Sequence[float], tolerance: float) -> list[tuple[float, float]]:
    """One utterance's (true, detected) pairs: each switch matched at most once, closest pairs first, within tolerance."""
    candidates = sorted((abs(d - t), i, j) for i, t in enumerate(true_times) for j, d in enumerate(found)
                        if abs(d - t) <= tolerance)
    used_true: set[int] = set()
    used_found: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if i not in used_true and j not in used_found:
            used_true.add(i)
            used_found.add(j)
            pairs.append((true_times[i], found[j]))
    return pairs


def switch_metrics(
    truth: Mapping[str, Sequence[float]], detected: Mapping[str, Sequence[float]], tolerance: float
) -> dict[str, Any]:
    """Switch-detection precision, recall and delay of detected vs true switch times per utterance.

    Within each utterance, true and detected switches are matched one to one,
    closest pairs first, a pair only if |detected - true| <= ``tolerance``
    (:func:`match_switches`; an utterance missing from one side has no
    switches there).  A matched pair is a *hit*; an unmatched true
    switch is *missed*; an unmatched detection is a *false alarm* (two
    detections near one true switch: one hit, one false alarm).  precision =
    hits / detected, recall = hits / true, F1 their harmonic mean (0 when nothing is detected); the delay
    statistics are over the hits (|detected - true|; signed: positive = late).
    """
    delays: list[float] = []
    hits = 0
    for utt in set(truth) | set(detected):
        pairs = match_switches(truth.get(utt, []), detected.get(utt, []), tolerance)
        hits += len(pairs)
        delays += [found - true for true, found in pairs]
    n_true = sum(len(times) for times in truth.values())
    n_detected = sum(len(found) for found in detected.values())
    precision = hits / n_detected if n_detected else None
    recall = hits / n_true if n_true else None
    f1 = 2 * hits / (n_true + n_detected) if n_true + n_detected else None  # = 2PR / (P + R)
    absolute = [abs(delay) for delay in delays]
    return {
        "tolerance": tolerance,
        "n_true": n_true,
        "n_detected": n_detected,
        "hits": hits,
        "missed": n_true - hits,
        "false_alarms": n_detected - hits,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "delay_mean": statistics.fmean(absolute) if absolute else None,
        "delay_median": statistics.median(absolute) if absolute else None,
        "delay_signed_mean": statistics.fmean(delays) if delays else None,
    }


def degradation(value: float, single: float) -> float | None:
    """Relative change in % of a code-switched error rate over the single-language one (None if that is 0)."""
    return None if single == 0 else 100.0 * (value - single) / single


def targets_met(scores: Mapping[str, Any], max_degradation: float) -> dict[str, bool | None]:
    """The WER target of a segment-routed system: degradation below ``max_degradation`` % (None if undefined)."""
    degraded = scores["wer_degradation_pct"]
    return {"degradation": None if degraded is None else degraded < max_degradation}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SetPaths:
    """One code-switched set: its data dir and its decoding."""

    data_dir: Path
    decode_dir: Path

    @property
    def name(self) -> str:
        return self.data_dir.name


def parse_set_paths(text: str) -> SetPaths:
    """``DATA_DIR:DECODE_DIR`` as an argparse ``type``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected DATA_DIR:DECODE_DIR, got {text!r}")
    return SetPaths(Path(parts[0]), Path(parts[1]))


def read_single_hyps(paths: Sequence[Path]) -> dict[str, str]:
    """The union of the single-language hyp files; an utterance in two of them must have one hypothesis."""
    hyps: dict[str, str] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        for utt, (lineno, text) in read_map_lines(path, allow_empty_value=True).items():
            if utt in hyps and hyps[utt] != text:
                raise UserInputError(f"{path}:{lineno}: {utt} has another hypothesis in {origin[utt]}")
            hyps[utt], origin[utt] = text, path
    return hyps


def single_language_hyps(truth_path: Path, utts: Sequence[str], singles: Mapping[str, str]) -> dict[str, str]:
    """utt -> its constituents' single-language hypotheses joined in time order."""
    truth = read_segments_truth(truth_path)
    joined = {}
    for utt in utts:
        if utt not in truth:
            raise UserInputError(f"{truth_path}: no segments for utterance {utt}")
        missing = [seg.source for seg in truth[utt] if seg.source not in singles]
        if missing:
            raise UserInputError(f"{truth_path}: {utt}: constituent {missing[0]} has no hypothesis in --single_hyps")
        joined[utt] = " ".join(singles[seg.source] for seg in truth[utt] if singles[seg.source])
    return joined


def read_stats(decode_dir: Path) -> dict[str, Any]:
    """codeswitch_decode's stats.json."""
    path = decode_dir / "stats.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise UserInputError(f"{path}: missing; run codeswitch_decode first") from err
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path}: not valid JSON ({err})") from err


def decoded_systems(decode_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """The systems codeswitch_decode ran (stats.json, in its order) and the whole stats."""
    path = decode_dir / "stats.json"
    stats = read_stats(decode_dir)
    systems = list(stats.get("systems", {}))
    if not systems:
        raise UserInputError(f"{path}: no systems")
    return systems, stats


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scored:
    """Word and character alignments of one system on one set."""

    words: ScoreReport
    chars: ScoreReport
    missing: int

    def as_json(self) -> dict[str, Any]:
        return {"wer": self.words.total.error_rate, "cer": self.chars.total.error_rate,
                "word_counts": self.words.total.as_json(), "char_counts": self.chars.total.as_json(),
                "num_missing_hyps": self.missing}


def score(refs: Mapping[str, str], hyps: Mapping[str, str], langs: Mapping[str, str]) -> Scored:
    """Normalise both sides as score.py does and align; a missing hypothesis is empty."""
    utts = list(refs)
    ref_norm = [normalize_text(refs[utt], langs[utt]) for utt in utts]
    hyp_norm = [normalize_text(hyps.get(utt, ""), langs[utt]) for utt in utts]
    missing = sum(utt not in hyps for utt in utts)
    return Scored(score_words(utts, ref_norm, hyp_norm), score_chars(utts, ref_norm, hyp_norm), missing)


def report_set(
    paths: SetPaths, singles: Mapping[str, str], out_dir: Path, tolerance: float, max_degradation: float
) -> dict[str, Any]:
    """Every number of one set; result.txt files under ``out_dir/<set>/`` on the way."""
    refs = read_map(paths.data_dir / "text")
    langs = read_map(paths.data_dir / "utt2lang")
    systems, stats = decoded_systems(paths.decode_dir)
    truth_switches = read_times(paths.data_dir / SWITCHES)
    single = score(refs, single_language_hyps(paths.data_dir / SEGMENTS_TRUTH, list(refs), singles), langs)
    write_result_txt(out_dir / paths.name / "single" / "result.txt", single.words, "constituents decoded singly")
    result: dict[str, Any] = {
        "data_dir": str(paths.data_dir), "decode_dir": str(paths.decode_dir), "num_utts": len(refs),
        "num_switches": sum(len(times) for times in truth_switches.values()), "lid": stats.get("lid"),
        "single": single.as_json(), "systems": {},
    }
    for system in systems:
        hyp_path = paths.decode_dir / system / "hyp"
        hyps = read_map(hyp_path, allow_empty_value=True)
        extra = sorted(set(hyps) - set(refs))
        if extra:
            raise UserInputError(f"{hyp_path}: utterance {extra[0]} is not in {paths.data_dir / 'text'}")
        scored = score(refs, hyps, langs)
        write_result_txt(out_dir / paths.name / system / "result.txt", scored.words, title=str(hyp_path))
        entry = scored.as_json()
        entry["wer_degradation_pct"] = degradation(entry["wer"], result["single"]["wer"])
        entry["cer_degradation_pct"] = degradation(entry["cer"], result["single"]["cer"])
        if (paths.decode_dir / system / DETECTED).is_file():
            detected = read_times(paths.decode_dir / system / DETECTED)
            entry["switches"] = switch_metrics(truth_switches, detected, tolerance)
            entry["targets_met"] = targets_met(entry, max_degradation)
        result["systems"][system] = entry
    return result


# --------------------------------------------------------------------------- outputs


def _number(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def _percent(value: float | None) -> str:
    return _number(None if value is None else 100 * value, ".0f", "%")


def _switch_cells(switches: Mapping[str, Any] | None) -> list[str]:
    """Precision / recall, missed / false alarms, delay of the hits; dashes for a system that detects none."""
    if switches is None:
        return ["-", "-", "-"]
    return [f"{_percent(switches['precision'])} / {_percent(switches['recall'])}",
            f"{switches['missed']} / {switches['false_alarms']}",
            f"{_number(switches['delay_mean'], '.2f')} / {_number(switches['delay_median'], '.2f')}"]


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "**not met**"


def _target_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per set and segment-routed system: the WER target, and switch precision / recall."""
    lines = []
    for name, entry in results["sets"].items():
        for system, scores in entry["systems"].items():
            if "targets_met" in scores:
                met, switches = scores["targets_met"], scores["switches"]
                lines.append(
                    f"- {name}, {system}: WER degradation {_number(scores['wer_degradation_pct'], '+.1f', '%')}"
                    f" (target < {results['max_degradation']:g}%: {_verdict(met['degradation'])}); switches"
                    f" within {results['tolerance']:g} s: recall {_percent(switches['recall'])}, precision"
                    f" {_percent(switches['precision'])} ({switches['hits']} of {switches['n_true']} true switches"
                    f" found, {switches['false_alarms']} false alarms)"
                )
    return ["", "Targets:", "", *lines] if lines else []


def _smoothing_text(smoothing: Mapping[str, Any] | None) -> str | None:
    """stats.json's lid.smoothing (:meth:`Smoothing.as_dict`) in words: :meth:`Smoothing.describe`."""
    return Smoothing(**smoothing).describe() if smoothing else None


def markdown(results: Mapping[str, Any]) -> str:
    """The codeswitch.md section (for make_results --extra_md): one row per set and system, then the targets."""
    tolerance = results["tolerance"]
    lines = [
        "## Code-switched test sets",
        "",
        f"WER / CER in % against the concatenated references (normaliser `{NORMALIZER_VERSION}`).",
        "*single WER*: the same constituents decoded one by one as single-language utterances;",
        "degradation: the relative WER increase over it.  Switches: detected and true switches matched",
        f"one to one within {tolerance:g} s (closest first); precision = hits / detected, recall = hits / true;",
        "an unmatched detection is a false alarm; delay: |detected - true| of the hits.",
        "",
        f"|set|utts|switches|system|WER|CER|single WER|WER degradation|precision / recall ({tolerance:g} s)"
        f"|missed / false alarms|delay mean / median (s)|",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    smoothing = {_smoothing_text((entry.get("lid") or {}).get("smoothing")) for entry in results["sets"].values()}
    smoothing.discard(None)
    if smoothing:
        lines[-2:-2] = ["Switches of the segments system, window labels smoothed by " + "; ".join(sorted(smoothing)) + ".", ""]
    for name, entry in results["sets"].items():
        for system, scores in entry["systems"].items():
            cells = [name, str(entry["num_utts"]), str(entry["num_switches"]), system, f"{scores['wer']:.1f}",
                     f"{scores['cer']:.1f}", f"{entry['single']['wer']:.1f}",
                     _number(scores["wer_degradation_pct"], "+.1f", "%"), *_switch_cells(scores.get("switches"))]
            lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines + _target_lines(results)) + "\n"


@dataclass(frozen=True)
class Example:
    """One utterance of the posterior plot."""

    title: str
    windows: np.ndarray  # (n_windows, 1 + n_labels): centre time, posteriors
    true_switches: Sequence[float]
    detected: Sequence[float]


def pick_examples(sets: Sequence[SetPaths], count: int) -> tuple[list[Example], list[str]]:
    """The first ``ceil(count / sets)`` utterances (sorted) of each set with saved posteriors; the LID labels."""
    per_set = math.ceil(count / len(sets))
    examples: list[Example] = []
    labels: list[str] = []
    for paths in sets:
        systems, stats = decoded_systems(paths.decode_dir)
        with_posteriors = [s for s in systems if (paths.decode_dir / s / POSTERIORS).is_dir()]
        if not with_posteriors:
            continue
        system_dir = paths.decode_dir / with_posteriors[0]
        labels = stats["lid"]["labels"]
        truth, detected = read_times(paths.data_dir / SWITCHES), read_times(system_dir / DETECTED)
        langs = read_map(paths.data_dir / "utt2lang")
        for utt in sorted(truth)[:per_set]:
            title = f"{paths.name}: {utt} (starts in {langs[utt]})"
            windows = np.load(system_dir / POSTERIORS / f"{utt}.npy")
            examples.append(Example(title, windows, truth[utt], detected.get(utt, [])))
    return examples[:count], labels


def plot_posteriors(examples: Sequence[Example], labels: Sequence[str], path: Path) -> None:
    """One panel per utterance: a posterior line per language over time, switches as vertical lines."""
    plt = pyplot_module()
    fig, axes = plt.subplots(len(examples), 1, figsize=(10, 2.4 * len(examples)), squeeze=False)
    for ax, example in zip(axes[:, 0], examples, strict=True):
        for column, label in enumerate(labels, start=1):
            ax.plot(example.windows[:, 0], example.windows[:, column], label=label)
        for index, time in enumerate(example.true_switches):
            ax.axvline(time, color="black", lw=1.5, label="true switch" if index == 0 else None)
        for index, time in enumerate(example.detected):
            ax.axvline(time, color="tab:red", ls="--", lw=1.2, label="detected" if index == 0 else None)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("LID posterior")
        ax.set_title(example.title, fontsize=9)
        ax.legend(loc="center right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s), window centres")
    save_figure(fig, path)


# --------------------------------------------------------------------------- the whole report


def write_report(
    sets: Sequence[SetPaths], single_hyps: Sequence[Path], out_dir: Path, *, tolerance: float,
    max_degradation: float, plot_utts: int, link_dir: Path | None = None, smoothing_md: Path | None = None,
) -> dict[str, Any]:
    """Score every set, plot, write codeswitch.md and results.json (last); returns the results.

    ``link_dir``: the plot's link in codeswitch.md is relative to it (default ``out_dir``);
    ``smoothing_md``: select_smoothing's dev table, appended.
    """
    names = [paths.name for paths in sets]
    if len(set(names)) != len(names):
        raise UserInputError(f"--sets: two data dirs have the same name ({', '.join(names)})")
    if tolerance <= 0:
        raise UserInputError(f"--tolerance {tolerance}: must be > 0")
    singles = read_single_hyps(single_hyps)
    results = {"tolerance": tolerance, "normalizer": NORMALIZER_VERSION,
               "single_hyps": [str(path) for path in single_hyps],
               "max_degradation": max_degradation,
               "sets": {paths.name: report_set(paths, singles, out_dir, tolerance, max_degradation)
                        for paths in sets}}
    text = markdown(results)
    if plot_utts > 0:
        examples, labels = pick_examples(sets, plot_utts)
        if examples:
            plot_posteriors(examples, labels, out_dir / "posteriors.png")
            link = os.path.relpath(out_dir / "posteriors.png", link_dir or out_dir)
            text = text.rstrip("\n") + f"\n\n![frame-level LID posteriors]({Path(link).as_posix()})\n"
    if smoothing_md is not None:
        try:
            text = text.rstrip("\n") + "\n\n" + smoothing_md.read_text(encoding="utf-8")
        except OSError as err:
            raise UserInputError(f"{smoothing_md}: cannot read ({err.strerror})") from err
    with atomic_write(out_dir / "codeswitch.md") as handle:
        handle.write(text)
    with atomic_write(out_dir / "results.json") as handle:
        json.dump(results, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    for name, entry in results["sets"].items():
        shown = "  ".join(f"{system} {scores['wer']:.1f}" for system, scores in entry["systems"].items())
        logger.info("%s: WER %s (single %.1f)", name, shown, entry["single"]["wer"])
    logger.info("wrote %s", out_dir / "codeswitch.md")
    return results
