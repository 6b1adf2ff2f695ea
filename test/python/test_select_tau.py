"""select_tau: stage 10's choice of the threshold strategy's τ on dev, and its record.

Each test writes the pooled dev scores of a few candidates (score.py's scores.json
under ``dev/threshold_tau<τ>/score``) and checks which τ is chosen, what is printed
for the recipe, and that ``tau_selection.json`` is what routing_report reads back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from espnet_adapters.bin import select_tau
from espnet_adapters.routing.tau import TAU_SELECTION, load_tau_selection


def _dev_scores(routing_dir: Path, scores: dict[str, tuple[float, float]]) -> None:
    for tau, (wer, cer) in scores.items():
        path = routing_dir / "dev" / f"threshold_tau{tau}" / "score" / "scores.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"set": "pooled_dev", "wer": wer, "cer": cer}), encoding="utf-8")


def _select(routing_dir: Path, *taus: str) -> int:
    return select_tau.main(["--routing_dir", str(routing_dir), "--taus", *taus])


def test_lowest_dev_wer_is_chosen_and_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _dev_scores(tmp_path, {"0.5": (11.0, 5.0), "0.7": (10.5, 4.6), "0.9": (10.8, 4.9)})
    assert _select(tmp_path, "0.5", "0.7", "0.9") == 0
    assert capsys.readouterr().out == "0.7\n"
    selection = load_tau_selection(tmp_path / TAU_SELECTION)
    assert selection.chosen == 0.7
    assert selection.candidates == [(0.5, 11.0, 5.0), (0.7, 10.5, 4.6), (0.9, 10.8, 4.9)]


def test_a_tie_goes_to_the_higher_tau(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Equal dev WER: the higher tau mixes adapters less often (and CER does not break the tie)."""
    _dev_scores(tmp_path, {"0.5": (10.0, 3.0), "0.7": (12.0, 1.0), "0.9": (10.0, 6.0)})
    assert _select(tmp_path, "0.9", "0.5", "0.7") == 0
    assert capsys.readouterr().out == "0.9\n"


def test_the_record_keeps_the_layout_the_recipe_wrote(tmp_path: Path) -> None:
    """Byte for byte what stage 10's inline Python wrote before (candidates in --taus order)."""
    _dev_scores(tmp_path, {"0.5": (50.0, 20.25), "0.9": (40.0, 30.5)})
    assert _select(tmp_path, "0.5", "0.9") == 0
    assert (tmp_path / TAU_SELECTION).read_text(encoding="utf-8") == (
        '{\n  "candidates": [\n'
        '    {\n      "tau": 0.5,\n      "dev_wer": 50.0,\n      "dev_cer": 20.25\n    },\n'
        '    {\n      "tau": 0.9,\n      "dev_wer": 40.0,\n      "dev_cer": 30.5\n    }\n'
        '  ],\n  "chosen": 0.9\n}\n'
    )
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [TAU_SELECTION]  # no temp file left


def test_a_missing_candidate_is_named_and_nothing_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    _dev_scores(tmp_path, {"0.5": (11.0, 5.0)})
    with caplog.at_level(logging.ERROR):
        assert _select(tmp_path, "0.5", "0.7") == 1
    assert "dev/threshold_tau0.7/score/scores.json: cannot read" in caplog.text
    assert capsys.readouterr().out == ""
    assert not (tmp_path / TAU_SELECTION).exists()


@pytest.mark.parametrize(("scores", "message"), [
    ('{"wer": 10.0}', "missing or invalid 'cer'"),
    ("not json", "not valid JSON"),
])
def test_malformed_scores_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture, scores: str, message: str) -> None:
    path = tmp_path / "dev" / "threshold_tau0.5" / "score" / "scores.json"
    path.parent.mkdir(parents=True)
    path.write_text(scores, encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        assert _select(tmp_path, "0.5") == 1
    assert str(path) in caplog.text and message in caplog.text


def test_a_tau_that_is_not_a_number(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert _select(tmp_path, "high") == 1
    assert "tau 'high' is not a number" in caplog.text


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        select_tau.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--routing_dir" in out and "--taus" in out and "tau_selection.json" in out
