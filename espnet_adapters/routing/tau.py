"""The threshold strategy's τ, chosen on dev: ``<routing_dir>/tau_selection.json``.

``{"candidates": [{"tau", "dev_wer", "dev_cer"}, ...], "chosen": tau}``; the
recipe writes it after decoding dev with every candidate, and the report reads
it back to show the choice beside the test numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from espnet_adapters.routing.results import json_number, read_json
from espnet_adapters.scoring.results import json_field
from espnet_adapters.utils.cli import UserInputError

TAU_SELECTION = "tau_selection.json"


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
    candidates = [(json_number(item, "tau", path), json_number(item, "dev_wer", path),
                   json_number(item, "dev_cer", path)) for item in raw]
    chosen = json_number(data, "chosen", path)
    if chosen not in [tau for tau, _, _ in candidates]:
        raise UserInputError(f"{path}: chosen tau {chosen:g} is not one of the candidates")
    return TauSelection(candidates, chosen)
