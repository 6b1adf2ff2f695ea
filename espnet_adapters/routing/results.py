"""What each routing strategy achieved: read back from score.py's and route_decode's outputs.

Reads, per strategy, under ``<routing_dir>/<strategy>/``:
  score/scores.json                      score.py on the pooled test set, --utt2category
                                         utt2lang (by_category = per language)
  [<set>/]logdir/output.*/stats.json     one per decode job: decode seconds, utterances, tau
  routing, hyp_lang                      routed language per utterance

Routing accuracy is the ``routing`` file's language column (for soft and
threshold mixtures the adapter of largest weight, i.e. the argmax language;
for base Whisper's own detection, ``hyp_lang``) against the true language.
Decode ms per utterance is the decode seconds summed over the jobs / utterances.
Missing, unreadable or malformed inputs are the user's error, named by path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.scoring.results import categories_of, json_field
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

# espnet_adapters.whisper.routing.STRATEGIES, not imported: that module pulls in
# torch and peft (about 10 s) for a report that only reads text files.
STRATEGIES = ("oracle", "hard", "soft", "threshold", "hierarchical", "base")
ORACLE, BASE, THRESHOLD = "oracle", "base", "threshold"
NUMBER = (int, float)


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


def json_number(data: dict[str, Any], key: str, path: Path) -> float:
    """``data[key]`` as a float; an absent or non-numeric entry names ``path``."""
    return float(json_field(data, key, NUMBER, path))


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
    return json_number(data, "wer", path), json_number(data, "cer", path), by_lang


def _job_stats(strategy_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every decode job's stats.json: the time is spread over the jobs."""
    paths = sorted(strategy_dir.glob("**/logdir/output.*/stats.json"))
    if not paths:
        raise UserInputError(f"{strategy_dir}/**/logdir/output.*/stats.json: no decode job statistics found")
    return [(path, read_json(path)) for path in paths]


def _decode_ms(jobs: Sequence[tuple[Path, dict[str, Any]]]) -> float:
    """Milliseconds per utterance over all jobs (sum of seconds / sum of utterances), not a mean of job means."""
    seconds = sum(json_number(stats, "decode_seconds", path) for path, stats in jobs)
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
    return float(tau) if isinstance(tau, NUMBER) else None


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
