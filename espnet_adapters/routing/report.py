"""The routing report: a markdown section on the LID and one on the routing strategies, and a bar chart.

The question the routing experiment answers is whether an unknown-language
utterance can be sent to the right adapter(s) at little cost in WER and in
latency; the yardstick is oracle routing (the true language's adapter).  This
module puts the measurements of eval_lid, route_decode and score side by side
and checks the WER against the seed target (:class:`Targets`; the latency target is
stated, not judged from one timing).

Per strategy: WER / CER pooled and per language; routing accuracy; relative
WER gap to oracle; decode ms per utterance; LID ms per utterance (eval_lid's
timing.json; none for oracle; for base Whisper's detection runs inside the
timed decode, so it is not added again); overhead = decode + LID ms - oracle
decode ms.  A strategy dir that does not exist is skipped with a warning;
without oracle the gap, overhead and target columns say n/a.  With threshold
routing, the strategies on the uncertain subset (:mod:`.uncertain`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.utils.plots import pyplot_module, save_figure
from espnet_adapters.routing.results import (
    BASE, NUMBER, ORACLE, THRESHOLD, StrategyResult, json_number, load_strategy, read_json,
)
from espnet_adapters.routing.tau import TAU_SELECTION, TauSelection, load_tau_selection
from espnet_adapters.routing.uncertain import render_uncertain
from espnet_adapters.scoring.results import json_field, pct
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

LID_EVAL = "eval_test"  # eval_lid's output dir for the pooled test set, under the LID dir
WHISPER_LID_KEY = "whisper_lid_ms_per_utt_batched"  # timing.json: Whisper's detection step alone
POOLED = "pooled"


@dataclass(frozen=True)
class Targets:
    """The seed targets of a routing strategy, against oracle."""

    max_wer_gap: float = 5.0  # relative pooled WER degradation, %
    max_overhead_ms: float = 10.0  # latency overhead per utterance


# --------------------------------------------------------------------------- rendering


def _link(target: Path, link_dir: Path) -> str:
    """``target`` as seen from ``link_dir`` (where the markdown ends up), so the link works wherever the tree is."""
    return Path(os.path.relpath(target, link_dir)).as_posix()


def _crop_order(name: str, path: Path) -> float:
    """"1s" < "2s" < "3s" < "full"."""
    try:
        return math.inf if name == "full" else float(name.removesuffix("s"))
    except ValueError:
        raise UserInputError(f"{path}: crop {name!r} is neither 'full' nor seconds like '2s'") from None


def _accuracy_cell(crop: dict[str, Any], system: str, path: Path) -> str:
    """A system's accuracy on a crop; "-" for a system not run (eval_lid --whisper_baseline false)."""
    return "-" if system not in crop else pct(100 * json_number(json_field(crop, system, dict, path), "accuracy", path))


def _lid_confusion(path: Path) -> list[str]:
    """The LID's section of eval_lid's confusion.md (not Whisper's), its heading one level down."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: cannot read ({err})") from err
    for section in ("\n" + text).split("\n## ")[1:]:
        if section.startswith("LID"):
            return ["### Confusion: " + section.rstrip("\n"), ""]
    raise UserInputError(f"{path}: no '## LID ...' section")


def _calibration_lines(results: dict[str, Any]) -> list[str]:
    """The LID's temperature scaling: NLL and ECE before -> after, on dev (where T was fitted) and this set."""
    test, dev = results.get("calibration"), results.get("dev_calibration")
    if not test:
        return []

    def shown(values: dict[str, Any]) -> str:
        return (f"NLL {values['nll_before']:.3f} → {values['nll_after']:.3f}, "
                f"ECE {100 * values['ece_before']:.1f} → {100 * values['ece_after']:.1f}%")

    if not dev:
        return ["", f"The LID is not calibrated (`calibrate: false`, temperature {test['temperature']:g}): test "
                    f"NLL {test['nll_after']:.3f}, ECE {100 * test['ece_after']:.1f}%."]
    return ["", f"Calibration (temperature scaling of the LID's logits, T = {test['temperature']:.2f} fitted on dev;"
                " the argmax, hence accuracy, is unchanged; ECE: 15 confidence bins, 0 = calibrated): "
                f"dev {shown(dev)}; test {shown(test)}."]


def render_lid(eval_dir: Path, link_dir: Path) -> list[str]:
    """'## Language ID': the LID beside Whisper's detection and the majority class, full and cropped."""
    path = eval_dir / "results.json"
    results = read_json(path)
    systems = json_field(results, "systems", dict, path)
    lines = [
        "## Language ID", "",
        f"Pooled test set, `{eval_dir}`: accuracy and macro-F1 in %. whisper = Whisper's language "
        "token restricted to the LID's labels; majority = always the most frequent training language.", "",
        "|system|accuracy|macro-F1|n|", "|---|---|---|---|",
    ]
    for name in systems:
        system = json_field(systems, name, dict, path)
        label = f"{name} ({system['label']})" if "label" in system else name
        lines.append(f"|{label}|{pct(100 * json_number(system, 'accuracy', path))}|"
                     f"{pct(100 * json_number(system, 'macro_f1', path))}|{json_field(system, 'n', int, path)}|")
    lines += _calibration_lines(results)
    crops = json_field(results, "crops", dict, path)
    lines += ["", "### Accuracy on the first seconds of each utterance", "",
              "|crop|utterances cut|lid|whisper|", "|---|---|---|---|"]
    for name in sorted(crops, key=lambda name: _crop_order(name, path)):
        crop = json_field(crops, name, dict, path)
        shown = "full" if name == "full" else name.replace("s", " s")
        lines.append(f"|{shown}|{crop.get('n_cropped', '-')}|{_accuracy_cell(crop, 'lid', path)}|"
                     f"{_accuracy_cell(crop, 'whisper', path)}|")
    lines += ["", *_lid_confusion(eval_dir / "confusion.md")]
    png = eval_dir / "confusion.png"
    if png.is_file():
        lines += [f"![confusion]({_link(png, link_dir)})", ""]
    else:
        logger.warning("%s: missing; no confusion figure linked", png)
    return lines


def relative_gap(value: float | None, oracle: float | None) -> float | None:
    """Relative WER change vs oracle in %; None when either is missing or oracle is 0 (undefined)."""
    if value is None or not oracle:
        return None
    return 100.0 * (value - oracle) / oracle


def _signed(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}{unit}"


def _ms(value: float) -> str:
    return f"{value:.2f}"


@dataclass(frozen=True)
class Comparison:
    """A strategy against oracle, None where there is no oracle to compare with."""

    wer_gap: float | None  # pooled, relative %
    overhead_ms: float | None

    def meets_wer(self, max_wer_gap: float) -> bool | None:
        """Whether the WER target is met, or None without oracle.  The latency target is not
        judged here: the overhead comes from one timing of decodes of different text under
        whatever load the machine had (bench/routing_overhead.py repeats its measurement)."""
        if self.wer_gap is None:
            return None
        return self.wer_gap < max_wer_gap


def compare(result: StrategyResult, oracle: StrategyResult | None) -> Comparison:
    """Gap and overhead of ``result`` relative to ``oracle``."""
    if oracle is None:
        return Comparison(None, None)
    return Comparison(relative_gap(result.wer, oracle.wer), result.latency_ms - oracle.decode_ms)


def _strategy_label(result: StrategyResult) -> str:
    return result.name if result.tau is None else f"{result.name} (τ={result.tau:g})"


def _lid_ms_cell(result: StrategyResult) -> str:
    if result.name == ORACLE:
        return "0 (true language)"
    if result.name == BASE:
        return "0 (in decode)"
    return _ms(result.lid_ms)


def _strategy_table(
    results: Sequence[StrategyResult], oracle: StrategyResult | None, langs: Sequence[str]
) -> list[str]:
    lines = [
        "|strategy|WER|CER|" + "".join(f"WER {lang}|" for lang in langs)
        + "routing acc.|WER gap vs oracle|decode ms/utt|LID ms/utt|overhead ms/utt vs oracle|",
        "|---|" + "---|" * (len(langs) + 7),
    ]
    for result in results:
        comparison = compare(result, oracle)
        by_lang = "".join(f"{pct(result.wer_by_lang[lang]) if lang in result.wer_by_lang else '-'}|"
                          for lang in langs)
        lines.append(
            f"|{_strategy_label(result)}|{pct(result.wer)}|{pct(result.cer)}|{by_lang}"
            f"{pct(100 * result.routing_accuracy)}|{_signed(comparison.wer_gap, '%')}|{_ms(result.decode_ms)}|"
            f"{_lid_ms_cell(result)}|{_signed(comparison.overhead_ms, '', 2)}|"
        )
    return lines + [""]


def _gap_table(results: Sequence[StrategyResult], oracle: StrategyResult | None, langs: Sequence[str]) -> list[str]:
    """Relative WER gap to oracle per language: a pooled gap can hide one language paying for the others."""
    lines = ["### WER gap to oracle per language", "",
             f"|strategy|{POOLED}|" + "".join(f"{lang}|" for lang in langs), "|---|---|" + "---|" * len(langs)]
    for result in results:
        cells = [relative_gap(result.wer, oracle and oracle.wer)]
        cells += [relative_gap(result.wer_by_lang.get(lang), oracle and oracle.wer_by_lang.get(lang))
                  for lang in langs]
        lines.append(f"|{_strategy_label(result)}|" + "".join(f"{_signed(cell, '%')}|" for cell in cells))
    return lines + [""]


def _tau_table(selection: TauSelection) -> list[str]:
    lines = ["### τ selection on dev (threshold)", "", "|τ|dev WER|dev CER|chosen|", "|---|---|---|---|"]
    for tau, wer, cer in selection.candidates:
        lines.append(f"|{tau:g}|{pct(wer)}|{pct(cer)}|{'**chosen**' if tau == selection.chosen else ''}|")
    return lines + [""]


def _verdict(met: bool, shown: str) -> str:
    return f"{'met' if met else 'missed'} ({shown})"


def _target_lines(
    results: Sequence[StrategyResult], oracle: StrategyResult | None, max_wer_gap: float, max_overhead_ms: float
) -> list[str]:
    """Whether each strategy meets the WER target; the latency target is stated, not judged."""
    lines = [f"**Targets**: < {max_wer_gap:g}% relative pooled WER degradation vs oracle and "
             f"< {max_overhead_ms:g} ms/utt latency overhead vs oracle. The overhead above is one timing "
             "of decodes of different text on a machine that may have been busy, so it gets no verdict "
             "here: `bench/routing_overhead.py` times the adapters' cost on the same tokens, the median of "
             "repeated rounds on an idle machine (README).", ""]
    for result in results:
        if result.name == ORACLE:
            continue
        comparison = compare(result, oracle)
        met = comparison.meets_wer(max_wer_gap)
        if met is None:
            lines.append(f"- {_strategy_label(result)}: n/a (no oracle)")
            continue
        lines.append(f"- {_strategy_label(result)}: WER {_verdict(met, _signed(comparison.wer_gap, '%'))}")
    return lines + [""]


def render_routing(
    results: Sequence[StrategyResult], langs: Sequence[str], selection: TauSelection | None,
    timing: dict[str, Any], *, routing_dir: Path, lid_dir: Path, lid_timing_key: str, targets: Targets,
    png_link: str,
) -> list[str]:
    """'## Adapter routing': the strategy table, per-language gaps, the tau choice, targets and chart."""
    oracle = next((result for result in results if result.name == ORACLE), None)
    whisper_ms = timing.get(WHISPER_LID_KEY)
    base_note = "" if not isinstance(whisper_ms, NUMBER) else (
        f" (eval_lid measured that step alone at {_ms(whisper_ms)} ms/utt, `{WHISPER_LID_KEY}`)")
    lines = [
        "## Adapter routing", "",
        f"Pooled test set of all languages, `{routing_dir}`; WER / CER in %. Routing accuracy: the "
        "routed adapter language (argmax for mixtures; Whisper's detected language for base) vs utt2lang. "
        "decode ms/utt: decode seconds summed over the jobs / utterances. "
        f"LID ms/utt: `{lid_timing_key}` of `{lid_dir / LID_EVAL / 'timing.json'}` (the classifier on "
        "the base encoder's outputs); oracle needs none; base's own language detection runs inside its timed "
        f"decode{base_note}. Overhead = decode + LID ms − oracle decode ms, per utterance.",
        "",
        *_strategy_table(results, oracle, langs),
        *_gap_table(results, oracle, langs),
    ]
    if selection is not None:
        lines += _tau_table(selection)
    lines += _target_lines(results, oracle, targets.max_wer_gap, targets.max_overhead_ms)
    return lines + [f"![routing]({png_link})", ""]


# --------------------------------------------------------------------------- chart


def plot_routing(results: Sequence[StrategyResult], langs: Sequence[str], path: Path) -> None:
    """Grouped bars: WER per language and pooled, one bar per strategy (a language not scored: no bar)."""
    plt = pyplot_module()
    groups = [*langs, POOLED]
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(3.5 + 1.2 * len(groups), 4.5))
    for index, result in enumerate(results):
        values = [result.wer_by_lang.get(lang, math.nan) for lang in langs] + [result.wer]
        offset = (index - (len(results) - 1) / 2) * width
        ax.bar([group + offset for group in range(len(groups))], values, width, label=_strategy_label(result))
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("WER (%)")
    ax.set_title("WER by routing strategy")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars stay visible
    save_figure(fig, path)


# --------------------------------------------------------------------------- the whole report


def write_report(
    routing_dir: Path, lid_dir: Path, utt2lang: Path, out_md: Path, out_png: Path, *,
    strategies: Sequence[str], lid_timing_key: str, targets: Targets, link_dir: Path | None = None,
) -> list[StrategyResult]:
    """Load every input (errors name the file), write the markdown and the chart (atomically).

    ``strategies`` in table order; ``lid_timing_key``: the timing.json entry used as
    LID ms per utterance; image links are relative to ``link_dir`` (where
    RESULTS.md is; default: ``out_md``'s dir).  Returns the strategies found.
    """
    truth = read_map(utt2lang)
    langs = sorted(set(truth.values()))
    eval_dir = lid_dir / LID_EVAL
    timing_path = eval_dir / "timing.json"
    timing = read_json(timing_path)
    lid_ms = json_number(timing, lid_timing_key, timing_path)
    loaded = [load_strategy(strategy, routing_dir, truth, lid_ms) for strategy in dict.fromkeys(strategies)]
    results = [result for result in loaded if result is not None]
    if not results:
        raise UserInputError(f"{routing_dir}: none of the strategies {' '.join(strategies)} was found")
    selection = None
    if any(result.name == THRESHOLD for result in results):
        selection = load_tau_selection(routing_dir / TAU_SELECTION)
        threshold = next(result for result in results if result.name == THRESHOLD)
        if threshold.tau != selection.chosen:
            logger.warning("%s/%s decoded with tau %s, but tau_selection.json chose %g",
                           routing_dir, THRESHOLD, threshold.tau, selection.chosen)
    link_dir = link_dir or out_md.parent
    lines = render_lid(eval_dir, link_dir) + render_routing(
        results, langs, selection, timing, routing_dir=routing_dir, lid_dir=lid_dir, lid_timing_key=lid_timing_key,
        targets=targets, png_link=_link(out_png, link_dir))
    if selection is not None:
        lines += render_uncertain(routing_dir, [result.name for result in results], eval_dir / "posteriors", langs,
                                  selection.chosen)
    plot_routing(results, langs, out_png)
    with atomic_write(out_md) as out:
        out.write("\n".join(lines).rstrip("\n") + "\n\n")  # a blank line before the next section
    for result in results:
        logger.info("%-9s WER %.2f%% routing accuracy %.3f latency %.2f ms/utt",
                    result.name, result.wer, result.routing_accuracy, result.latency_ms)
    logger.info("wrote %s and %s", out_md, out_png)
    return results
