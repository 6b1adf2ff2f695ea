#!/usr/bin/env python3
"""Report the LID stage and the adapter-routing strategies: a markdown section and a bar chart.

The question the routing experiment answers is whether an unknown-language
utterance can be sent to the right adapter(s) at little cost in WER and in
latency; the yardstick is oracle routing (the true language's adapter).  This
program puts the measurements of eval_lid, route_decode and score side by side
and checks them against the seed targets (--max_wer_gap, --max_overhead_ms).

Reads:
  <lid_dir>/eval_test/results.json, timing.json, confusion.md (and links confusion.png)
  <routing_dir>/<strategy>/score/scores.json     score.py on the pooled test set,
                                                 --utt2category utt2lang (by_category = per language)
  <routing_dir>/<strategy>/[<set>/]logdir/output.*/stats.json   one per decode job
  <routing_dir>/<strategy>/routing, hyp_lang     routed language per utterance
  <routing_dir>/tau_selection.json               {candidates: [{tau, dev_wer, dev_cer}], chosen}
                                                 (read when the threshold strategy is reported)
  --utt2lang                                     the pooled test set's true languages

Per strategy: WER / CER pooled and per language; routing accuracy (the
``routing`` file's language column, which for soft and threshold mixtures is the
adapter of largest weight, i.e. the argmax language; for base Whisper's own
detection, ``hyp_lang``); relative WER gap to oracle; decode ms per utterance
(decode seconds summed over the jobs / utterances); LID ms per utterance
(eval_lid's timing.json; none for oracle; for base Whisper's detection runs inside
the timed decode, so it is not added again); overhead = decode + LID ms - oracle
decode ms.  A strategy dir that does not exist is skipped with a warning; without
oracle the gap, overhead and target columns say n/a.

Writes, atomically: --out_md, with "## Language ID" and "## Adapter routing"
(meant for make_results --extra_md), and --out_png, WER per language and pooled,
one bar per strategy.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.lid.plots import pyplot_module, save_figure
from espnet_adapters.scoring.results import categories_of, json_field, pct
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

# espnet_adapters.whisper.routing.STRATEGIES, not imported: that module pulls in
# torch and peft (about 10 s) for a report that only reads text files.
STRATEGIES = ("oracle", "hard", "soft", "threshold", "base")
ORACLE, BASE, THRESHOLD = "oracle", "base", "threshold"
LID_EVAL = "eval_test"  # eval_lid's output dir for the pooled test set, under --lid_dir
WHISPER_LID_KEY = "whisper_lid_ms_per_utt_batched"  # timing.json: Whisper's detection step alone
POOLED = "pooled"
_NUMBER = (int, float)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--routing_dir", type=Path, required=True, help="exp/routing_<tag>: one dir per strategy.")
    parser.add_argument("--lid_dir", type=Path, required=True, help="exp/<model>_lid_<tag> (eval_test inside).")
    parser.add_argument("--utt2lang", type=Path, required=True, help="True language of every pooled test utterance.")
    parser.add_argument("--out_md", type=Path, required=True, help="Markdown section to write.")
    parser.add_argument("--link_dir", type=Path, default=None,
                        help="Image links are relative to this dir (where RESULTS.md is); default: --out_md's dir.")
    parser.add_argument("--out_png", type=Path, required=True, help="Bar chart to write (routing.png).")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
                        help="Strategies to report, in table order.")
    parser.add_argument("--lid_timing_key", default="lid_ms_per_utt_batch1_median",
                        help="timing.json entry used as LID ms per utterance (an utterance routed on its own).")
    parser.add_argument("--max_wer_gap", type=float, default=5.0,
                        help="Target: relative pooled WER degradation vs oracle below this many %%.")
    parser.add_argument("--max_overhead_ms", type=float, default=10.0,
                        help="Target: latency overhead vs oracle below this many ms per utterance.")
    return parser


# --------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object; missing, unreadable or malformed files are the user's error, named by path."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserInputError(f"{path}: cannot read: {err.strerror}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def _number(data: dict[str, Any], key: str, path: Path) -> float:
    return float(json_field(data, key, _NUMBER, path))


@dataclass(frozen=True)
class StrategyResult:
    """What one routing strategy achieved on the pooled test set."""

    name: str
    wer: float
    cer: float
    wer_by_lang: dict[str, float]
    routing_accuracy: float
    decode_ms: float  # per utterance, decode seconds summed over the jobs
    lid_ms: float  # per utterance, added to decode_ms in the latency
    tau: float | None  # threshold: the tau it decoded with

    @property
    def latency_ms(self) -> float:
        """Per-utterance cost of routing and decoding (the LID runs before the decoder)."""
        return self.decode_ms + self.lid_ms


def _scores(path: Path) -> tuple[float, float, dict[str, float]]:
    """Pooled WER, CER and WER per language (score.py's by_category, categories = languages)."""
    data = read_json(path)
    by_lang = {lang: wer for lang, (_, wer, _) in categories_of(data, path).items()}
    return _number(data, "wer", path), _number(data, "cer", path), by_lang


def _job_stats(strategy_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every decode job's stats.json: the time is spread over the jobs."""
    paths = sorted(strategy_dir.glob("**/logdir/output.*/stats.json"))
    if not paths:
        raise UserInputError(f"{strategy_dir}/**/logdir/output.*/stats.json: no decode job statistics found")
    return [(path, read_json(path)) for path in paths]


def _decode_ms(jobs: Sequence[tuple[Path, dict[str, Any]]]) -> float:
    """Milliseconds per utterance over all jobs (sum of seconds / sum of utterances), not a mean of job means."""
    seconds = sum(_number(stats, "decode_seconds", path) for path, stats in jobs)
    utterances = sum(json_field(stats, "utterances", int, path) for path, stats in jobs)
    if utterances <= 0:
        raise UserInputError(f"{jobs[0][0].parent.parent}: the decode jobs report no utterances")
    return 1000.0 * seconds / utterances


def _tau(jobs: Sequence[tuple[Path, dict[str, Any]]]) -> float | None:
    """The threshold the jobs decoded with; None when they have none or disagree (outputs of two runs)."""
    taus = {stats.get("tau") for _, stats in jobs}
    if len(taus) != 1:
        logger.warning("%s: decode jobs ran with different tau values %s", jobs[0][0].parent.parent, taus)
        return None
    (tau,) = taus
    return float(tau) if isinstance(tau, _NUMBER) else None


def routing_accuracy(strategy: str, strategy_dir: Path, truth: dict[str, str]) -> float:
    """Share of routed utterances whose routed language is the true one.

    ``routing`` lines are ``utt LANG weights...``: LANG is the decoding
    language, the adapter of largest weight (argmax for soft).  base routes to
    no adapter; its language is Whisper's own detection, ``hyp_lang``.
    """
    path = strategy_dir / ("hyp_lang" if strategy == BASE else "routing")
    routed = {utt: value.split()[0] for utt, value in read_map(path).items()}
    if not routed:
        raise UserInputError(f"{path}: no utterances")
    unknown = [utt for utt in routed if utt not in truth]
    if unknown:
        raise UserInputError(f"{path}: {len(unknown)} utterance(s) not in the utt2lang, e.g. {unknown[0]}")
    if len(routed) < len(truth):
        logger.warning("%s: %d of %d test utterances routed", path, len(routed), len(truth))
    return sum(lang == truth[utt] for utt, lang in routed.items()) / len(routed)


def load_strategy(strategy: str, routing_dir: Path, truth: dict[str, str], lid_ms: float) -> StrategyResult | None:
    """One strategy's numbers; None (with a warning) when it was not run.

    ``lid_ms`` is the LID's cost per utterance, paid by the strategies that
    route on its posteriors: oracle needs no LID, and base's own detection runs
    inside its timed decode.
    """
    directory = routing_dir / strategy
    if not directory.is_dir():
        logger.warning("%s: no such directory; strategy %s not reported", directory, strategy)
        return None
    wer, cer, by_lang = _scores(directory / "score" / "scores.json")
    jobs = _job_stats(directory)
    return StrategyResult(
        name=strategy, wer=wer, cer=cer, wer_by_lang=by_lang,
        routing_accuracy=routing_accuracy(strategy, directory, truth),
        decode_ms=_decode_ms(jobs), lid_ms=0.0 if strategy in (ORACLE, BASE) else lid_ms,
        tau=_tau(jobs) if strategy == THRESHOLD else None,
    )


@dataclass(frozen=True)
class TauSelection:
    """The threshold strategy's tau, chosen on dev: (tau, dev WER, dev CER) per candidate."""

    candidates: list[tuple[float, float, float]]
    chosen: float


def load_tau_selection(path: Path) -> TauSelection:
    """tau_selection.json; the chosen tau must be one of the candidates."""
    data = read_json(path)
    raw = json_field(data, "candidates", list, path)
    if not raw or not all(isinstance(item, dict) for item in raw):
        raise UserInputError(f"{path}: 'candidates' must be a non-empty list of objects")
    candidates = [(_number(item, "tau", path), _number(item, "dev_wer", path), _number(item, "dev_cer", path))
                  for item in raw]
    chosen = _number(data, "chosen", path)
    if chosen not in [tau for tau, _, _ in candidates]:
        raise UserInputError(f"{path}: chosen tau {chosen:g} is not one of the candidates")
    return TauSelection(candidates, chosen)


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
    return "-" if system not in crop else pct(100 * _number(json_field(crop, system, dict, path), "accuracy", path))


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
        lines.append(f"|{label}|{pct(100 * _number(system, 'accuracy', path))}|"
                     f"{pct(100 * _number(system, 'macro_f1', path))}|{json_field(system, 'n', int, path)}|")
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

    def meets(self, max_wer_gap: float, max_overhead_ms: float) -> tuple[bool, bool] | None:
        """(WER target met, latency target met), or None without oracle."""
        if self.wer_gap is None or self.overhead_ms is None:
            return None
        return self.wer_gap < max_wer_gap, self.overhead_ms < max_overhead_ms


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
    """Whether each strategy meets the seed targets, from the measured numbers."""
    lines = [f"**Targets**: < {max_wer_gap:g}% relative pooled WER degradation vs oracle and "
             f"< {max_overhead_ms:g} ms/utt latency overhead vs oracle.", ""]
    for result in results:
        if result.name == ORACLE:
            continue
        comparison = compare(result, oracle)
        meets = comparison.meets(max_wer_gap, max_overhead_ms)
        if meets is None:
            lines.append(f"- {_strategy_label(result)}: n/a (no oracle)")
            continue
        summary = "meets both targets" if all(meets) else "misses a target"
        lines.append(f"- {_strategy_label(result)}: {summary}: WER "
                     f"{_verdict(meets[0], _signed(comparison.wer_gap, '%'))}, overhead "
                     f"{_verdict(meets[1], _signed(comparison.overhead_ms, ' ms', 2))}")
    return lines + [""]


def render_routing(
    results: Sequence[StrategyResult], langs: Sequence[str], selection: TauSelection | None,
    timing: dict[str, Any], args: argparse.Namespace,
) -> list[str]:
    """'## Adapter routing': the strategy table, per-language gaps, the tau choice, targets and chart."""
    oracle = next((result for result in results if result.name == ORACLE), None)
    whisper_ms = timing.get(WHISPER_LID_KEY)
    base_note = "" if not isinstance(whisper_ms, _NUMBER) else (
        f" (eval_lid measured that step alone at {_ms(whisper_ms)} ms/utt, `{WHISPER_LID_KEY}`)")
    lines = [
        "## Adapter routing", "",
        f"Pooled test set of all languages, `{args.routing_dir}`; WER / CER in %. Routing accuracy: the "
        "routed adapter language (argmax for mixtures; Whisper's detected language for base) vs utt2lang. "
        "decode ms/utt: decode seconds summed over the jobs / utterances. "
        f"LID ms/utt: `{args.lid_timing_key}` of `{args.lid_dir / LID_EVAL / 'timing.json'}` (the classifier on "
        "the base encoder's outputs); oracle needs none; base's own language detection runs inside its timed "
        f"decode{base_note}. Overhead = decode + LID ms − oracle decode ms, per utterance.",
        "",
        *_strategy_table(results, oracle, langs),
        *_gap_table(results, oracle, langs),
    ]
    if selection is not None:
        lines += _tau_table(selection)
    lines += _target_lines(results, oracle, args.max_wer_gap, args.max_overhead_ms)
    return lines + [f"![routing]({_link(args.out_png, args.link_dir or args.out_md.parent)})", ""]


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


def run(args: argparse.Namespace) -> None:
    """Load every input (errors name the file), render the markdown, draw the chart."""
    truth = read_map(args.utt2lang)
    langs = sorted(set(truth.values()))
    eval_dir = args.lid_dir / LID_EVAL
    timing_path = eval_dir / "timing.json"
    timing = read_json(timing_path)
    lid_ms = _number(timing, args.lid_timing_key, timing_path)
    loaded = [load_strategy(strategy, args.routing_dir, truth, lid_ms) for strategy in dict.fromkeys(args.strategies)]
    results = [result for result in loaded if result is not None]
    if not results:
        raise UserInputError(f"{args.routing_dir}: none of the strategies {' '.join(args.strategies)} was found")
    selection = None
    if any(result.name == THRESHOLD for result in results):
        selection = load_tau_selection(args.routing_dir / "tau_selection.json")
        threshold = next(result for result in results if result.name == THRESHOLD)
        if threshold.tau != selection.chosen:
            logger.warning("%s/%s decoded with tau %s, but tau_selection.json chose %g",
                           args.routing_dir, THRESHOLD, threshold.tau, selection.chosen)
    lines = render_lid(eval_dir, args.link_dir or args.out_md.parent) + render_routing(results, langs, selection, timing, args)
    plot_routing(results, langs, args.out_png)
    with atomic_write(args.out_md) as out:
        out.write("\n".join(lines))
    for result in results:
        logger.info("%-9s WER %.2f%% routing accuracy %.3f latency %.2f ms/utt",
                    result.name, result.wer, result.routing_accuracy, result.latency_ms)
    logger.info("wrote %s and %s", args.out_md, args.out_png)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.routing_report --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
