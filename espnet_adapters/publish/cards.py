"""A Hugging Face model card (``README.md``) for one language adapter, from the recipe's results.

The YAML header follows the Hub's model-card metadata: ``base_model``,
``language``, ``library_name: peft``, ``license`` (of the training data,
:mod:`.licences`), ``pipeline_tag``, ``tags`` and a ``model-index`` with the
adapter's WER and CER on each scored test set (stage 8's ``scores.json``).
The body has the same numbers beside the base model's, with the paired
bootstrap 95% interval of the difference (:func:`espnet_adapters.scoring.results.compare_to_base`),
the training facts (``train_stats.json``, ``adapter_config.json``) and how to use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from espnet_adapters.publish.licences import DataLicence
from espnet_adapters.scoring.results import AdapterComparison
from espnet_adapters.utils.cli import UserInputError

# What the body's set names mean (the recipe's test splits).
SET_DESCRIPTIONS = {
    "test": "unseen speakers and unseen sentences of the training corpus",
    "test_other": "the test sentences spoken by another synthesizer (Festival): speech the adapter never heard",
}


@dataclass(frozen=True)
class CardFacts:
    """Everything a card states about one adapter."""

    lang: str
    name: str  # the experiment name, exp/<name>
    hub_base_model: str
    base_sha256: str
    licences: Sequence[DataLicence]
    results: Sequence[AdapterComparison]
    train_stats: Mapping[str, Any]
    adapter_config: Mapping[str, Any]


def split_of(set_name: str, lang: str) -> str:
    """``hi_test_other`` -> ``test_other``."""
    return set_name[len(lang) + 1:] if set_name.startswith(f"{lang}_") else set_name


def metadata(facts: CardFacts) -> dict[str, Any]:
    """The YAML header."""
    licence = facts.licences[0] if len(facts.licences) == 1 else None
    header: dict[str, Any] = {
        "base_model": facts.hub_base_model,
        "language": [facts.lang],
        "library_name": "peft",
        "license": licence.license if licence else "other",
    }
    if licence is None:
        header["license_name"] = "+".join(sorted({item.license for item in facts.licences}))
    else:
        header |= {key: value for key in ("license_name", "license_link")
                   if (value := getattr(licence, key)) is not None}
    header |= {
        "pipeline_tag": "automatic-speech-recognition",
        "tags": ["whisper", "lora", "peft", "espnet-adapters", f"language-{facts.lang}"],
        "metrics": ["wer", "cer"],
        "model-index": [{
            "name": facts.name,
            "results": [{
                "task": {"type": "automatic-speech-recognition", "name": "Automatic Speech Recognition"},
                "dataset": {"name": row.adapter.set_name, "type": "espnet-adapters/" + "+".join(
                    item.corpus for item in facts.licences), "split": split_of(row.adapter.set_name, facts.lang)},
                "metrics": [
                    {"type": "wer", "value": round(row.adapter.wer, 2), "name": "WER"},
                    {"type": "cer", "value": round(row.adapter.cer, 2), "name": "CER"},
                ],
            } for row in facts.results],
        }],
    }
    return header


def _ci(row: AdapterComparison, name: str) -> str:
    interval = getattr(row, name)
    if interval is None or not interval.defined:
        return "–"
    return f"{interval.estimate:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}]"


def results_table(rows: Sequence[AdapterComparison], lang: str) -> list[str]:
    lines = ["| test set | utterances | base WER | adapter WER | WER change (95% CI) | base CER | adapter CER "
             "| CER change (95% CI) | base words correct | adapter words correct |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base, adapter = row.base, row.adapter
        flag = " (both > 100%: not a gain)" if row.wer_both_over_100 else ""
        lines.append(f"| {adapter.set_name} | {adapter.num_utts} | {base.wer:.1f} | {adapter.wer:.1f} | "
                     f"{_ci(row, 'wer')}{flag} | {base.cer:.1f} | {adapter.cer:.1f} | {_ci(row, 'cer')} | "
                     f"{base.corr:.1f} | {adapter.corr:.1f} |")
    described = sorted({split_of(row.adapter.set_name, lang) for row in rows} & set(SET_DESCRIPTIONS))
    lines += ["", *(f"- `{split}`: {SET_DESCRIPTIONS[split]}." for split in described)]
    return lines


def render_card(facts: CardFacts) -> str:
    """The whole README.md."""
    stats, config = facts.train_stats, facts.adapter_config
    header = yaml.safe_dump(metadata(facts), allow_unicode=True, sort_keys=False, width=1000)
    licences = [f"- {item.corpus}: {item.description}; licence `{item.license}`"
                + (f" ({item.license_name})" if item.license_name else "")
                + (f", {item.license_link}" if item.license_link else "") for item in facts.licences]
    targets = config.get("target_modules")
    targets = ", ".join(f"`{name}`" for name in sorted(targets)) if isinstance(targets, list) else f"`{targets}`"
    lines = [
        "---", header.rstrip(), "---", "",
        f"# {facts.name}: a LoRA adapter of {facts.hub_base_model} for `{facts.lang}`", "",
        f"A language adapter trained by the espnet-adapters recipe (stage 6) on the "
        f"frozen {facts.hub_base_model} (the weights this run used: sha256 `{facts.base_sha256[:16]}…` of config + "
        "weights). Decode it with the recipe's decoding rules (`decoding.yaml` beside this card, whose "
        "`encoder_trim` the adapter was trained with).", "",
        "## Results (word and character error rates, %; words correct = sclite's Corr)", "",
        *results_table(facts.results, facts.lang), "",
        "Changes are adapter − base in points with the paired bootstrap 95% interval over utterances.", "",
        "## Training", "",
        f"- LoRA rank {config.get('r')}, alpha {config.get('lora_alpha')}, dropout {config.get('lora_dropout')}, "
        f"on {targets}",
        f"- {stats.get('train_utts')} training utterances, {stats.get('steps')} steps "
        f"({stats.get('epochs', 0):.1f} epochs); adapter of step {stats.get('best_step')} "
        f"(best dev WER {stats.get('best_dev_wer', float('nan')):.1f}, base {stats.get('base_dev_wer') or float('nan'):.1f})",
        f"- {stats.get('trainable_params')} trainable parameters of {stats.get('total_params')}; "
        f"{stats.get('train_seconds', 0) / 60:.1f} min of training",
        "", "## Training data", "", *licences, "",
        "## Use", "",
        "```bash",
        f"./transcribe.sh --adapters DIR --lang {facts.lang} recording.wav   # DIR: the folder of this export",
        "```", "",
        "or with `peft`: `PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained("
        f"\"{facts.hub_base_model}\"), \"<this folder>\")`, decoding with the language token `<|{facts.lang}|>`.",
        "",
    ]
    return "\n".join(lines)


def read_card_metadata(path: Path) -> dict[str, Any]:
    """The YAML header of a model card (between the first two ``---`` lines)."""
    text = path.read_text(encoding="utf-8")
    parts = text.split("---\n", 2)
    if len(parts) < 3 or parts[0]:
        raise UserInputError(f"{path}: no YAML header between '---' lines")
    data = yaml.safe_load(parts[1])
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: the YAML header is not a mapping")
    return data
