"""Collect the ``scores.json`` files of an ``exp/`` tree into an ESPnet-style RESULTS.md.

Layout read: ``<exp_dir>/<model_tag>/decode_<set>[_<tag>]/score/scores.json``
as written by ``espnet_adapters.bin.score``.  The decoding *variant* comes from
the decoding's own ``stats.json`` (``logdir/output.*/stats.json``, every job
alike), never from the directory name: the decode config's base name
(``default`` for ``conf/decode/default.yaml`` or the built-in defaults) followed
by the options that differ from it (``default beam_size=5``,
``default lang_mode=auto``).  Results of different decoding settings never
share a summary table.  Only scored decodings appear: a model or decode dir without
``scores.json`` produces no row and no column.

Rendering is a pure function of the entries and an :class:`Environment`, so the
tables are deterministic (models, languages and decode dirs sorted) and can be
tested without the date or the git state.

What the tables report beside WER and CER:

- **Corr**, sclite's words correct: the percentage of reference words
  recognised (hits / reference words).  Insertions do not lower it, so it stays
  within 0-100 and still ranks two systems whose WERs both exceed 100%.
- For each adapter against its base model on the adapter's own test set, the
  difference (points) and relative change of WER and CER, and the difference
  of Corr, each with a **paired bootstrap 95% confidence interval**
  (:mod:`espnet_adapters.scoring.bootstrap`) computed from both decodings'
  ``score/per_utt.tsv``, resampling the test utterances.
- **No change is reported between two rates above 100%** (``n/a (both > 100%)``):
  such rates count mostly insertions (hallucinated or looping output), and
  458% -> 115% is not a 75% better recognition; Corr is the comparison then.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from espnet_adapters.scoring.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    PairedComparison,
    paired_bootstrap,
)
from espnet_adapters.scoring.per_utt import PER_UTT_FILE, PerUttCounts, paired_counts, read_per_utt
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

DEFAULT_VARIANT = "default"
# exp/<base>_lora_<lang>_<tag>: the experiment name stage 6 gives a language's adapter.
ADAPTER_MODEL = re.compile(r"^(?P<base>.+)_lora_(?P<lang>[a-z]{2,3})_(?P<tag>.+)$")
_COUNT_KEYS = ("ref", "cor", "sub", "del", "ins")
_DETAIL_HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"


@dataclass(frozen=True)
class ScoreEntry:
    """One scored decoding: where it was found and what its ``scores.json`` says."""

    model: str
    decode_dir: str
    variant: str
    lang: str
    set_name: str
    num_utts: int
    wer: float
    cer: float
    word_counts: dict[str, int]
    char_counts: dict[str, int]
    sentence_error_rate: float
    normalizer: str
    # source corpus -> (utterances, WER, CER), for a pooled multi-corpus test set.
    by_category: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    # For an adapter: its LoRA rank and trainable parameters (from the experiment dir).
    lora_rank: int | None = None
    trainable_params: int | None = None
    # source corpus -> Corr, where scores.json has it (scored after Corr was added).
    category_corr: dict[str, float] = field(default_factory=dict)
    # score/per_utt.tsv, checked against the totals; None for a decoding scored before it existed.
    per_utt: PerUttCounts | None = field(default=None, compare=False, repr=False)

    @property
    def corr(self) -> float:
        """Words correct (sclite's Corr): hits / reference words, in %."""
        return 100.0 * self.word_counts["cor"] / self.word_counts["ref"]


@dataclass(frozen=True)
class Environment:
    """The header facts of RESULTS.md: when, from which code, with what software."""

    date: str
    git_commit: str
    python: str
    torch: str
    transformers: str
    espnet: str
    cpu_count: int


def _format_option(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_format_option(item) for item in value)
    return "none" if value is None else str(value)


def _dir_variant(decode_dir: Path, set_name: str | None) -> str:
    """What older decodings are named by: the decode dir's suffix after ``decode_<set>``."""
    if set_name is not None and decode_dir.name.startswith(f"decode_{set_name}"):
        return decode_dir.name[len(f"decode_{set_name}"):].lstrip("_") or DEFAULT_VARIANT
    parts = decode_dir.name.split("_", 3)  # decode_<lang>_<split>_<suffix>
    return DEFAULT_VARIANT if len(parts) < 4 else parts[3]


def variant_label(record: Mapping[str, Any]) -> str:
    """A decoding variant's name from a decoder's search record (whisper.decode.search_record, stats.json):
    the config's name (``default`` for none) and the options changed from it."""
    changed = record["options_changed"]
    name = record.get("decode_config") or DEFAULT_VARIANT
    return " ".join([str(name), *(f"{key}={_format_option(changed[key])}" for key in sorted(changed))])


def decoding_variant(decode_dir: Path, set_name: str | None = None) -> str:
    """The decoding variant of ``decode_dir``: its config name and changed options, read from the
    ``stats.json`` of its jobs, which must all agree (see the module docstring)."""
    files = sorted([*decode_dir.glob("stats.json"), *decode_dir.glob("logdir/output.*/stats.json")])
    if not files:
        raise UserInputError(f"{decode_dir}: no stats.json of its decoding (logdir/output.*/stats.json): "
                             "decode it again")
    labels: dict[str, Path] = {}
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserInputError(f"{path}: not a valid stats.json ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
            raise UserInputError(f"{path}: no 'options' object: not a decoder's stats.json")
        changed = data.get("options_changed")
        if "decode_config" not in data and changed is None:  # decoded before stats.json recorded them
            label = _dir_variant(decode_dir, set_name)
            logger.warning("%s: no decode_config/options_changed (an older decoder): decoding variant %r taken "
                           "from the directory name", path, label)
        elif not isinstance(changed, dict):
            raise UserInputError(f"{path}: 'options_changed' must be an object")
        else:
            label = variant_label(data)
        labels.setdefault(label, path)
    if len(labels) > 1:
        (first, one), (second, other) = list(labels.items())[:2]
        raise UserInputError(f"{other}: decoded as '{second}', but {one} as '{first}': the jobs of one decoding "
                             "must share their options; decode it again")
    return next(iter(labels))


def json_field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserInputError(f"{path}: missing or invalid {key!r}")
    return value


def _counts(data: dict[str, Any], key: str, path: Path) -> dict[str, int]:
    """The five counts; a zero reference length would make every percentage undefined."""
    counts = json_field(data, key, dict, path)
    checked = {name: json_field(counts, name, int, path) for name in _COUNT_KEYS}
    if checked["ref"] <= 0:
        raise UserInputError(f"{path}: {key}.ref must be positive")
    return checked


def load_entry(path: Path) -> ScoreEntry:
    """Read ``<model>/<decode_dir>/score/scores.json``; bad content names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path}: not a valid scores.json ({err})") from err
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    decode_dir, model = path.parent.parent.name, path.parent.parent.parent.name
    set_name = json_field(data, "set", str, path)
    return ScoreEntry(
        model=model,
        decode_dir=decode_dir,
        variant=decoding_variant(path.parent.parent, set_name),
        lang=json_field(data, "lang", str, path),
        set_name=set_name,
        num_utts=json_field(data, "num_utts", int, path),
        wer=float(json_field(data, "wer", (int, float), path)),
        cer=float(json_field(data, "cer", (int, float), path)),
        word_counts=_counts(data, "word_counts", path),
        char_counts=_counts(data, "char_counts", path),
        sentence_error_rate=float(json_field(data, "sentence_error_rate", (int, float), path)),
        normalizer=json_field(data, "normalizer", str, path),
        by_category=categories_of(data, path),
        **_adapter_facts(path.parent.parent.parent),
        category_corr=_category_corr(data, path),
        per_utt=_per_utt_of(data, path),
    )


def _per_utt_of(data: dict[str, Any], path: Path) -> PerUttCounts | None:
    """``per_utt.tsv`` beside ``scores.json`` (the name its ``per_utt`` gives), checked
    against its totals so that a stale file is never paired; None if it was never written."""
    name = data.get("per_utt", PER_UTT_FILE)
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise UserInputError(f"{path}: invalid 'per_utt' (a file name in the score dir)")
    per_utt_path = path.parent / name
    if not per_utt_path.is_file():
        if "per_utt" in data:
            raise UserInputError(f"{path}: per_utt names {per_utt_path}, which does not exist")
        return None
    per_utt = read_per_utt(per_utt_path)
    expected = {
        "num_utts": json_field(data, "num_utts", int, path),
        "word_counts": _counts(data, "word_counts", path),
        "char_counts": _counts(data, "char_counts", path),
    }
    found = {
        "num_utts": len(per_utt.utt_ids),
        "word_counts": per_utt.total("word"),
        "char_counts": per_utt.total("char"),
    }
    for key, value in expected.items():
        if value != found[key]:
            raise UserInputError(
                f"{per_utt_path}: does not add up to {path} ({key}: {found[key]} vs {value}); score the decoding again"
            )
    return per_utt


def _category_corr(data: dict[str, Any], path: Path) -> dict[str, float]:
    """Corr of each source corpus, where scores.json's by_category has one."""
    result = {}
    for name, value in data.get("by_category", {}).items():
        if "corr" in value:
            result[name] = float(json_field(value, "corr", (int, float), path))
    return result


def _adapter_facts(exp: Path) -> dict[str, int]:
    """Rank (peft's adapter_config.json, OWSM's adapter.yaml) and trainable parameters (train_stats.json)."""
    facts = {}
    for key, file, field_name in (("lora_rank", "adapter/adapter_config.json", "r"),
                                  ("trainable_params", "train_stats.json", "trainable_params")):
        path = exp / file
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(field_name)
            except json.JSONDecodeError as err:
                raise UserInputError(f"{path}: not valid JSON ({err})") from err
            if isinstance(value, int):
                facts[key] = value
    owsm = exp / "adapter" / "adapter.yaml"  # OWSM adapters (ESPnet's adapter_conf)
    if owsm.is_file():
        rank = ((yaml.safe_load(owsm.read_text(encoding="utf-8")) or {}).get("adapter_conf") or {}).get("rank")
        if isinstance(rank, int):
            facts["lora_rank"] = rank
    return facts


def categories_of(data: dict[str, Any], path: Path) -> dict[str, tuple[int, float, float]]:
    raw = data.get("by_category", {})
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: by_category must be an object")
    result = {}
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise UserInputError(f"{path}: by_category.{name} must be an object")
        result[name] = (
            json_field(value, "num_utts", int, path),
            float(json_field(value, "wer", (int, float), path)),
            float(json_field(value, "cer", (int, float), path)),
        )
    return result


def find_entries(exp_dir: Path) -> list[ScoreEntry]:
    """Every ``scores.json`` under ``exp_dir``, skipping hidden (half-written) dirs."""
    paths = [
        path
        for path in exp_dir.glob("*/decode_*/score/scores.json")
        if not any(part.startswith(".") for part in path.relative_to(exp_dir).parts)
    ]
    entries = [load_entry(path) for path in sorted(paths)]
    logger.info("found %d scored decodings under %s", len(entries), exp_dir)
    return entries


def _git_commit(repo_dir: Path) -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo_dir, capture_output=True, text=True, check=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return result.stdout.strip()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_environment(repo_dir: Path) -> Environment:
    """Facts about this run; ``repo_dir`` is where ``git rev-parse`` is asked."""
    return Environment(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        git_commit=_git_commit(repo_dir),
        python=platform.python_version(),
        torch=_version("torch"),
        transformers=_version("transformers"),
        espnet=_version("espnet"),
        cpu_count=os.cpu_count() or 0,
    )


def pct(value: float) -> str:
    return f"{value:.1f}"


def _header(env: Environment, commands: Sequence[str], normalizers: Iterable[str]) -> list[str]:
    lines = [
        "<!-- Generated by espnet_adapters.bin.make_results; edits are overwritten. -->",
        "# RESULTS",
        "",
        "## Environments",
        f"- date: `{env.date}`",
        f"- git commit: `{env.git_commit}`",
        f"- python version: `{env.python}`",
        f"- pytorch version: `{env.torch}`",
        f"- transformers version: `{env.transformers}`",
        f"- espnet version: `{env.espnet}`",
        f"- CPU count: `{env.cpu_count}`",
        f"- text normalizer: {', '.join(f'`{name}`' for name in sorted(set(normalizers)))}",
    ]
    if len(commands) == 1:
        lines.append(f"- how to reproduce: `{commands[0]}`")
    elif commands:
        lines.append("- how to reproduce (one run per model family; the tables hold them all):")
        lines += [f"    - `{command}`" for command in commands]
    return lines + [""]


def _column_labels(columns: Sequence[tuple[str, str]]) -> list[str]:
    """Language codes; a language with several test sets gets the set name added."""
    langs = [lang for lang, _ in columns]
    return [lang if langs.count(lang) == 1 else f"{lang} ({set_name})" for lang, set_name in columns]


CORR_LEGEND = "Corr: words correct, % of reference words recognised (hits / reference words, sclite's Corr)"


def _summary_cell(entry: ScoreEntry) -> str:
    return f"{pct(entry.wer)} / {pct(entry.cer)} (n={entry.num_utts})"


def _summary_table(variant: str, entries: Sequence[ScoreEntry]) -> list[str]:
    columns = sorted({(entry.lang, entry.set_name) for entry in entries})
    cells = {(entry.model, entry.lang, entry.set_name): entry for entry in entries}
    labels = [cell for label in _column_labels(columns) for cell in (label, f"{label} Corr")]
    lines = [
        f"## Summary: decoding `{variant}`",
        "",
        "WER / CER in %, n = number of test utterances. A row `<base>_lora_<lang>_<tag>` is the "
        "adapter trained on <lang>: its other columns are the cross-language (forgetting) check.",
        "",
        "|model|" + "|".join(labels) + "|",
        "|---|" + "---|" * len(labels),
    ]
    for model in sorted({entry.model for entry in entries}):
        row = []
        for lang, set_name in columns:
            entry = cells.get((model, lang, set_name))
            row += ["-", "-"] if entry is None else [_summary_cell(entry), pct(entry.corr)]
        lines.append(f"|{model}|" + "|".join(row) + "|")
    return lines + ["", f"{CORR_LEGEND}; insertions do not lower it, so it stays within 0-100.", ""]


def _relative(new: float, old: float) -> str:
    return "n/a" if old == 0 else f"{100.0 * (new - old) / old:+.1f}%"


BOTH_OVER_100 = "n/a (both > 100%)"
NO_CI = "CI n/a"


def _bounds(interval: Interval | None, unit: str) -> str:
    """`` [low, high]`` of a bootstrap interval, or why there is none."""
    if interval is None:
        return f" [{NO_CI}]"
    if not interval.defined:
        return " [n/a]"
    return f" [{interval.low:+.1f}{unit}, {interval.high:+.1f}{unit}]"


@dataclass(frozen=True)
class AdapterComparison:
    """One row of the adapters-vs-base table: the point values and, when both
    decodings have per_utt.tsv, the paired bootstrap intervals (else None)."""

    base: ScoreEntry
    adapter: ScoreEntry
    wer: Interval | None = None  # difference in points
    wer_relative: Interval | None = None  # relative change in %
    cer: Interval | None = None
    cer_relative: Interval | None = None
    corr: Interval | None = None

    @property
    def wer_both_over_100(self) -> bool:
        return self.base.wer > 100.0 and self.adapter.wer > 100.0

    @property
    def cer_both_over_100(self) -> bool:
        return self.base.cer > 100.0 and self.adapter.cer > 100.0


def compare_to_base(
    base: ScoreEntry, adapter: ScoreEntry, num_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> AdapterComparison:
    """Paired bootstrap of adapter - base for WER, CER and Corr on the same resamples
    (same seed, same utterances); point values only when a per_utt.tsv is missing."""
    if base.per_utt is None or adapter.per_utt is None:
        return AdapterComparison(base, adapter)
    base_counts, adapter_counts = paired_counts(base.per_utt, adapter.per_utt)

    def boot(unit: str, name: str) -> PairedComparison:
        return paired_bootstrap(
            base_counts.column(unit, "ref"), base_counts.column(unit, name), adapter_counts.column(unit, name),
            num_resamples=num_resamples, seed=seed,
        )

    wer, cer, corr = boot("word", "errors"), boot("char", "errors"), boot("word", "hits")
    return AdapterComparison(base, adapter, wer.difference, wer.relative, cer.difference, cer.relative, corr.difference)


def comparison_table(pairs: Sequence[tuple[ScoreEntry, ScoreEntry]]) -> list[str]:
    """Markdown rows of ``system - base`` for scored pairs of decodings of the same utterances:
    WER / CER / words correct of both and each difference with its paired bootstrap 95% CI.

    What a lever study reports (README tables; ``compare_scores``): two systems that are not an
    adapter and its base model.  A pair whose WERs (or CERs) both exceed 100% gets no difference.
    """
    lines = ["|set|n|base|system|base WER / CER / Corr|system WER / CER / Corr|ΔWER [95% CI]|ΔCER [95% CI]"
             "|ΔCorr [95% CI]|",
             "|---|---|---|---|---|---|---|---|---|"]
    for base, system in pairs:
        if base.per_utt is None or system.per_utt is None:
            raise UserInputError(f"{base.decode_dir} / {system.decode_dir}: no per_utt.tsv (score again, stage 8)")
        if base.set_name != system.set_name:
            raise UserInputError(f"{base.model}/{base.decode_dir} is {base.set_name}, "
                                 f"{system.model}/{system.decode_dir} is {system.set_name}: not the same test set")
        row = compare_to_base(base, system)
        wer = BOTH_OVER_100 if row.wer_both_over_100 else f"{system.wer - base.wer:+.1f}" + _bounds(row.wer, "")
        cer = BOTH_OVER_100 if row.cer_both_over_100 else f"{system.cer - base.cer:+.1f}" + _bounds(row.cer, "")
        corr = f"{system.corr - base.corr:+.1f}" + _bounds(row.corr, "")
        lines.append(f"|{base.set_name}|{base.num_utts}|{base.model}/{base.decode_dir}|{system.model}/"
                     f"{system.decode_dir}|{pct(base.wer)} / {pct(base.cer)} / {pct(base.corr)}|{pct(system.wer)} / "
                     f"{pct(system.cer)} / {pct(system.corr)}|{wer}|{cer}|{corr}|")
    return lines


def _change_cells(
    new: float, old: float, difference: Interval | None, relative: Interval | None, ci_known: bool, flagged: bool
) -> list[str]:
    """The Δ and rel. cells of WER or CER."""
    if flagged:
        return [BOTH_OVER_100, BOTH_OVER_100]
    delta = f"{new - old:+.1f}" + _bounds(difference if ci_known else None, "")
    if old == 0:
        return [delta, "n/a (base 0)"]
    return [delta, _relative(new, old) + _bounds(relative if ci_known else None, "%")]


def _adapter_row(row: AdapterComparison) -> str:
    base, entry = row.base, row.adapter
    match = ADAPTER_MODEL.match(entry.model)
    tag = entry.model if match is None else match["tag"]
    ci_known = row.wer is not None
    num_utts = str(entry.num_utts) if entry.num_utts == base.num_utts else f"{base.num_utts} / {entry.num_utts}"
    cells = [entry.set_name, num_utts, base.model, tag]
    cells.append(f"{pct(base.wer)} → {pct(entry.wer)}")
    cells += _change_cells(entry.wer, base.wer, row.wer, row.wer_relative, ci_known, row.wer_both_over_100)
    cells.append(f"{pct(base.cer)} → {pct(entry.cer)}")
    cells += _change_cells(entry.cer, base.cer, row.cer, row.cer_relative, ci_known, row.cer_both_over_100)
    cells.append(f"{pct(base.corr)} → {pct(entry.corr)}")
    cells.append(f"{entry.corr - base.corr:+.1f}" + _bounds(row.corr if ci_known else None, ""))
    return "|" + "|".join(cells) + "|"


def _adapter_table(
    variant: str, entries: Sequence[ScoreEntry], num_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> list[str]:
    """Each language's adapter on its own language's test set next to its base model.

    Empty when no adapter was scored: then there is nothing to compare.
    """
    cells = {(entry.model, entry.set_name): entry for entry in entries}
    rows = []
    for entry in sorted(entries, key=lambda e: (e.lang, e.set_name, e.model)):
        match = ADAPTER_MODEL.match(entry.model)
        if match is None or match["lang"] != entry.lang:
            continue
        base = cells.get((match["base"], entry.set_name))
        if base is None:
            continue
        rows.append(compare_to_base(base, entry, num_resamples, seed))
    if not rows:
        return []
    lines = [
        f"## Adapters vs base: decoding `{variant}`",
        "",
        "Each language's LoRA adapter on its own test set against the base model; rates in %, base → adapter.",
        "",
        "|test set|n|base model|adapter|WER|ΔWER [95% CI]|rel. WER [95% CI]|"
        "CER|ΔCER [95% CI]|rel. CER [95% CI]|Corr|ΔCorr [95% CI]|",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_adapter_row(row) for row in rows),
        "",
        f"{CORR_LEGEND}. Δ: adapter - base in points; rel.: (adapter - base) / base. "
        f"[95% CI]: paired bootstrap over the test utterances ({num_resamples} resamples with replacement, "
        f"seed {seed}, the same resampled utterances for base and adapter and for WER, CER and Corr; "
        "corpus-level rates per resample; 2.5th and 97.5th percentiles): an interval without 0 is a "
        "significant change.",
    ]
    if any(row.wer_both_over_100 or row.cer_both_over_100 for row in rows):
        lines += [
            "",
            f"{BOTH_OVER_100}: base and adapter both make more errors than there are reference words (or "
            "characters), mostly insertions, so a lower rate is not a recognition gain and no change is "
            "reported; compare Corr.",
        ]
    if any(row.adapter.set_name.endswith("_other") for row in rows):
        lines += [
            "",
            "`<lang>_<split>_other`: the sentences of `<lang>_<split>` spoken by another synthesizer (Festival's "
            "diphone voices, `conf/synth_other.yaml`) that no adapter heard in training: whether an adapter "
            "learnt the language or the synthesizer it was trained on.",
        ]
    if any(row.wer is None for row in rows):
        lines += [
            "",
            f"{NO_CI}: a decoding scored without score/{PER_UTT_FILE} (scored by an older version; run the "
            "scoring stage again).",
        ]
    return lines + [""]


def _detail_row(entry: ScoreEntry, counts: dict[str, int]) -> str:
    """One ESPnet-style row; percentages are recomputed from the counts."""
    ref = counts["ref"]
    errors = counts["sub"] + counts["del"] + counts["ins"]
    numerators = (counts["cor"], counts["sub"], counts["del"], counts["ins"], errors)
    values = [str(entry.num_utts), str(ref)]
    values += [pct(100.0 * value / ref) for value in numerators] + [pct(entry.sentence_error_rate)]
    return f"|{entry.decode_dir}|" + "|".join(values) + "|"


def _detail_table(title: str, rows: list[str], unit: str) -> list[str]:
    legend = (
        f"Corr: hits / reference {unit} (sclite's Corr); Sub, Del, Ins, Err = Sub + Del + Ins: % of reference "
        f"{unit} (Err exceeds 100 when insertions dominate); S.Err: % of utterances with an error."
    )
    return [f"### {title}", "", _DETAIL_HEADER, "|---|---|---|---|---|---|---|---|---|", *rows, "", legend, ""]


def _model_tables(model: str, entries: Sequence[ScoreEntry]) -> list[str]:
    ordered = sorted(entries, key=lambda entry: entry.decode_dir)
    return [
        f"## {model}",
        "",
        *_detail_table("WER", [_detail_row(entry, entry.word_counts) for entry in ordered], "words"),
        *_detail_table(
            "CER (Wrd counts characters, spaces included)",
            [_detail_row(entry, entry.char_counts) for entry in ordered],
            "characters",
        ),
    ]


def _source_table(variant: str, entries: Sequence[ScoreEntry]) -> list[str]:
    """WER per source corpus of pooled test sets (in-domain vs cross-domain).

    Empty unless some test set pools two or more sources.
    """
    pooled = [entry for entry in entries if len(entry.by_category) > 1]
    if not pooled:
        return []
    columns = sorted({(e.set_name, source) for e in pooled for source in e.by_category})
    labels = [cell for set_name, source in columns for cell in (f"{set_name}: {source}", f"{source} Corr")]
    lines = [
        f"## Per source corpus: decoding `{variant}`",
        "",
        "Pooled test sets scored per source (utt2category): WER / CER in %, n = utterances.",
        "",
        "|model|" + "|".join(labels) + "|",
        "|---|" + "---|" * len(labels),
    ]
    for model in sorted({entry.model for entry in pooled}):
        cells = {e.set_name: e for e in pooled if e.model == model}
        row = []
        for set_name, source in columns:
            entry = cells.get(set_name)
            value = None if entry is None else entry.by_category.get(source)
            row.append("-" if value is None else f"{pct(value[1])} / {pct(value[2])} (n={value[0]})")
            corr = None if entry is None else entry.category_corr.get(source)
            row.append("-" if corr is None else pct(corr))
        lines.append(f"|{model}|" + "|".join(row) + "|")
    return lines + ["", f"{CORR_LEGEND}; - where the decoding was scored before Corr was recorded.", ""]


def _rank_table(variant: str, entries: Sequence[ScoreEntry]) -> list[str]:
    """A --lora_ranks grid: each language's own-test WER against the adapter's rank.

    Empty unless some (model, language) has adapters of two or more ranks.
    """
    cells: dict[tuple[str, str, str], dict[int, ScoreEntry]] = {}
    for entry in entries:
        match = ADAPTER_MODEL.match(entry.model)
        if match is None or match["lang"] != entry.lang or entry.lora_rank is None:
            continue
        family = re.sub(rf"(^|_)r{entry.lora_rank}(?=_|$)", r"\1r*", match["tag"], count=1)
        cells.setdefault((match["base"], family, entry.set_name), {})[entry.lora_rank] = entry
    cells = {key: row for key, row in cells.items() if len(row) > 1}
    if not cells:
        return []
    ranks = sorted({rank for row in cells.values() for rank in row})
    lines = [
        f"## WER vs LoRA rank: decoding `{variant}`",
        "",
        "Each language's adapter on its own test set; WER / CER in % (trainable parameters).",
        "",
        "|model|adapter|test set|" + "|".join(f"r={rank}" for rank in ranks) + "|",
        "|---|---|---|" + "---|" * len(ranks),
    ]
    for (base, family, set_name), row in sorted(cells.items()):
        values = []
        for rank in ranks:
            entry = row.get(rank)
            params = "" if entry is None or entry.trainable_params is None else f" ({entry.trainable_params:,})"
            values.append("-" if entry is None else f"{pct(entry.wer)} / {pct(entry.cer)}{params}")
        lines.append(f"|{base}|{family}|{set_name}|" + "|".join(values) + "|")
    return lines + [""]


def _variant_order(variant: str) -> tuple[bool, str]:
    return (variant != DEFAULT_VARIANT, variant)


def render_results(
    entries: Sequence[ScoreEntry],
    env: Environment,
    commands: Sequence[str] = (),
    extra_md: str | None = None,
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> str:
    """The whole RESULTS.md text: header, one summary table per decoding
    variant, detailed WER/CER tables per model, then ``extra_md`` verbatim.

    ``num_resamples`` and ``seed`` set the paired bootstrap of the adapters-vs-base tables."""
    lines = _header(env, commands, (entry.normalizer for entry in entries))
    for variant in sorted({entry.variant for entry in entries}, key=_variant_order):
        selected = [entry for entry in entries if entry.variant == variant]
        lines += _adapter_table(variant, selected, num_resamples, seed)
        lines += _summary_table(variant, selected)
        lines += _source_table(variant, selected)
        lines += _rank_table(variant, selected)
    for model in sorted({entry.model for entry in entries}):
        lines += _model_tables(model, [entry for entry in entries if entry.model == model])
    text = "\n".join(lines)
    if extra_md:
        text += "\n" + extra_md.rstrip("\n") + "\n"
    return text
