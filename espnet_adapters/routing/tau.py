"""The threshold strategy's τ, chosen on dev: ``<routing_dir>/tau_selection.json``.

``{"candidates": [{"tau", "dev_wer", "dev_cer"}, ...], "chosen": tau}``; the
recipe (stage 10, ``select_tau``) decodes the pooled dev sets with every
candidate into ``<routing_dir>/dev/threshold_tau<τ>/``, then :func:`select_tau`
picks the τ of the lowest pooled dev WER (ties: the higher τ, which mixes
adapters less often) and :func:`write_tau_selection` records the choice; the
report reads it back to show the choice beside the test numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from espnet_adapters.routing.results import json_number, read_json
from espnet_adapters.scoring.results import json_field
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write

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


def dev_scores_path(routing_dir: Path, tau: str) -> Path:
    """score.py's scores.json of the pooled dev sets decoded with threshold ``tau`` (as the recipe spells it)."""
    return routing_dir / "dev" / f"threshold_tau{tau}" / "score" / "scores.json"


def select_tau(routing_dir: Path, taus: Sequence[str]) -> TauSelection:
    """The candidate ``taus`` with their pooled dev WER / CER, and the chosen one.

    ``taus`` are spelt as in the recipe's directory names (``0.5``); the chosen
    one has the lowest dev WER, ties broken towards the higher tau (fewer mixtures).
    """
    if not taus:
        raise UserInputError("no tau candidates")
    candidates = []
    for tau in taus:
        try:
            value = float(tau)
        except ValueError as err:
            raise UserInputError(f"tau {tau!r} is not a number") from err
        path = dev_scores_path(routing_dir, tau)
        scores = read_json(path)
        candidates.append((value, json_number(scores, "wer", path), json_number(scores, "cer", path)))
    chosen = min(candidates, key=lambda c: (c[1], -c[0]))[0]
    return TauSelection(candidates, chosen)


def write_tau_selection(path: Path, selection: TauSelection) -> None:
    """``tau_selection.json`` (atomically), in the layout :func:`load_tau_selection` reads."""
    data = {
        "candidates": [{"tau": tau, "dev_wer": wer, "dev_cer": cer} for tau, wer, cer in selection.candidates],
        "chosen": selection.chosen,
    }
    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
