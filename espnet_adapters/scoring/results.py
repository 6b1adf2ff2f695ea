"""Collect the ``scores.json`` files of an ``exp/`` tree into an ESPnet-style RESULTS.md.

Layout read: ``<exp_dir>/<model_tag>/decode_<set>[_<variant>]/score/scores.json``
as written by ``espnet_adapters.bin.score``.  The *variant* is what follows the
set name in the decode dir (``decode_hi_test_beam5`` -> ``beam5``; none ->
``default``): results of different decoding settings never share a summary
table.  Only scored decodings appear: a model or decode dir without
``scores.json`` produces no row and no column.

Rendering is a pure function of the entries and an :class:`Environment`, so the
tables are deterministic (models, languages and decode dirs sorted) and can be
tested without the date or the git state.
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
from typing import Any, Iterable, Sequence

import yaml

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


def decode_variant(decode_dir: str, set_name: str) -> str:
    """``decode_hi_test_beam5`` with set ``hi_test`` -> ``beam5``; ``decode_hi_test`` -> ``default``.

    A decode dir that does not start with ``decode_<set>`` is its own variant.
    """
    stem = f"decode_{set_name}"
    if decode_dir == stem:
        return DEFAULT_VARIANT
    if decode_dir.startswith(stem + "_"):
        return decode_dir[len(stem) + 1 :]
    logger.warning("%s does not start with %s: using the whole name as decode variant", decode_dir, stem)
    return decode_dir


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
        variant=decode_variant(decode_dir, set_name),
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
    )


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


def _summary_cell(entry: ScoreEntry) -> str:
    return f"{pct(entry.wer)} / {pct(entry.cer)} (n={entry.num_utts})"


def _summary_table(variant: str, entries: Sequence[ScoreEntry]) -> list[str]:
    columns = sorted({(entry.lang, entry.set_name) for entry in entries})
    cells = {(entry.model, entry.lang, entry.set_name): entry for entry in entries}
    lines = [
        f"## Summary: decoding `{variant}`",
        "",
        "WER / CER in %, n = number of test utterances. A row `<base>_lora_<lang>_<tag>` is the "
        "adapter trained on <lang>: its other columns are the cross-language (forgetting) check.",
        "",
        "|model|" + "|".join(_column_labels(columns)) + "|",
        "|---|" + "---|" * len(columns),
    ]
    for model in sorted({entry.model for entry in entries}):
        row = []
        for lang, set_name in columns:
            entry = cells.get((model, lang, set_name))
            row.append("-" if entry is None else _summary_cell(entry))
        lines.append(f"|{model}|" + "|".join(row) + "|")
    return lines + [""]


def _relative(new: float, old: float) -> str:
    return "n/a" if old == 0 else f"{100.0 * (new - old) / old:+.1f}%"


def _adapter_table(variant: str, entries: Sequence[ScoreEntry]) -> list[str]:
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
        rows.append(
            f"|{entry.set_name}|{match['base']}|{pct(base.wer)} / {pct(base.cer)}|{match['tag']}|"
            f"{pct(entry.wer)} / {pct(entry.cer)}|{_relative(entry.wer, base.wer)}|{_relative(entry.cer, base.cer)}|"
        )
    if not rows:
        return []
    return [
        f"## Adapters vs base: decoding `{variant}`",
        "",
        "Each language's LoRA adapter on its own test set; WER / CER in %, relative change vs the base model.",
        "",
        "|test set|base model|base WER / CER|adapter|adapter WER / CER|WER change|CER change|",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _detail_row(entry: ScoreEntry, counts: dict[str, int]) -> str:
    """One ESPnet-style row; percentages are recomputed from the counts."""
    ref = counts["ref"]
    errors = counts["sub"] + counts["del"] + counts["ins"]
    numerators = (counts["cor"], counts["sub"], counts["del"], counts["ins"], errors)
    values = [str(entry.num_utts), str(ref)]
    values += [pct(100.0 * value / ref) for value in numerators] + [pct(entry.sentence_error_rate)]
    return f"|{entry.decode_dir}|" + "|".join(values) + "|"


def _detail_table(title: str, rows: list[str]) -> list[str]:
    return [f"### {title}", "", _DETAIL_HEADER, "|---|---|---|---|---|---|---|---|---|", *rows, ""]


def _model_tables(model: str, entries: Sequence[ScoreEntry]) -> list[str]:
    ordered = sorted(entries, key=lambda entry: entry.decode_dir)
    return [
        f"## {model}",
        "",
        *_detail_table("WER", [_detail_row(entry, entry.word_counts) for entry in ordered]),
        *_detail_table(
            "CER (Wrd counts characters, spaces included)",
            [_detail_row(entry, entry.char_counts) for entry in ordered],
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
    lines = [
        f"## Per source corpus: decoding `{variant}`",
        "",
        "Pooled test sets scored per source (utt2category): WER / CER in %, n = utterances.",
        "",
        "|model|" + "|".join(f"{set_name}: {source}" for set_name, source in columns) + "|",
        "|---|" + "---|" * len(columns),
    ]
    for model in sorted({entry.model for entry in pooled}):
        cells = {e.set_name: e.by_category for e in pooled if e.model == model}
        row = []
        for set_name, source in columns:
            value = cells.get(set_name, {}).get(source)
            row.append("-" if value is None else f"{pct(value[1])} / {pct(value[2])} (n={value[0]})")
        lines.append(f"|{model}|" + "|".join(row) + "|")
    return lines + [""]


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
    entries: Sequence[ScoreEntry], env: Environment, commands: Sequence[str] = (), extra_md: str | None = None
) -> str:
    """The whole RESULTS.md text: header, one summary table per decoding
    variant, detailed WER/CER tables per model, then ``extra_md`` verbatim."""
    lines = _header(env, commands, (entry.normalizer for entry in entries))
    for variant in sorted({entry.variant for entry in entries}, key=_variant_order):
        selected = [entry for entry in entries if entry.variant == variant]
        lines += _adapter_table(variant, selected)
        lines += _summary_table(variant, selected)
        lines += _source_table(variant, selected)
        lines += _rank_table(variant, selected)
    for model in sorted({entry.model for entry in entries}):
        lines += _model_tables(model, [entry for entry in entries if entry.model == model])
    text = "\n".join(lines)
    if extra_md:
        text += "\n" + extra_md.rstrip("\n") + "\n"
    return text
