"""routing_report: the numbers of its markdown come from the exp tree, and bad inputs are named.

Every test builds a tiny fake exp tree (a few JSON and Kaldi text files, four
utterances) whose numbers are chosen so that each derived value (gap to oracle,
routing accuracy, decode and overhead ms) has one easily checked answer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from espnet_adapters.bin import routing_report
from espnet_adapters.data.kaldi import write_map
from espnet_adapters.routing.report import relative_gap

TRUTH = {"u1": "hi", "u2": "hi", "u3": "it", "u4": "it"}
TIMING = {"lid_ms_per_utt_batch1_median": 2.5, "lid_ms_per_utt_batched": 0.5, "whisper_lid_ms_per_utt_batched": 7.0}
# name: (pooled WER, CER, WER hi, WER it, [(utterances, decode seconds) per job], routed language per utterance)
STRATEGIES: dict[str, tuple[float, float, float, float, list[tuple[int, float]], dict[str, str]]] = {
    # 100 ms/utt: the latency reference
    "oracle": (10.0, 4.0, 8.0, 12.0, [(2, 0.1), (2, 0.3)], TRUTH),
    # gap +4 %; 105 ms + 2.5 LID = +7.5 ms: meets both targets; routes u3 wrongly: 75 %
    "hard": (10.4, 4.2, 8.8, 12.0, [(1, 0.05), (3, 0.37)], {**TRUTH, "u3": "hi"}),
    # gap +10 %; 115 + 2.5 = +17.5 ms: misses both; routes u1, u3 wrongly: 50 %
    "soft": (11.0, 4.4, 9.0, 13.0, [(4, 0.46)], {**TRUTH, "u1": "it", "u3": "hi"}),
    # gap +2 %; 100 + 2.5 = +2.5 ms: meets both; 100 %
    "threshold": (10.2, 4.1, 8.0, 12.4, [(4, 0.4)], TRUTH),
    # gap +100 %; 95 ms, no LID: -5 ms; Whisper detects u4 as English: 75 %
    "base": (20.0, 9.0, 18.0, 22.0, [(4, 0.38)], {**TRUTH, "u4": "en"}),
}
TAU_SELECTION = {"candidates": [{"tau": t, "dev_wer": w, "dev_cer": c} for t, w, c in
                                ((0.5, 11.0, 5.0), (0.7, 10.5, 4.6), (0.9, 10.8, 4.9))], "chosen": 0.7}
LID_RESULTS = {
    "n": 4, "labels": ["hi", "it"],
    "systems": {
        "lid": {"n": 4, "accuracy": 0.75, "macro_f1": 0.7333},
        "whisper": {"n": 4, "accuracy": 0.5, "macro_f1": 0.4667},
        "majority": {"n": 4, "accuracy": 0.5, "macro_f1": 0.3333, "label": "hi"},
    },
    "crops": {  # out of order: the report sorts them
        name: {"n_cropped": cut, "lid": {"accuracy": lid, "macro_f1": 0.1},
               "whisper": {"accuracy": whisper, "macro_f1": 0.1}}
        for name, cut, lid, whisper in (("full", 0, 0.75, 0.5), ("2s", 3, 0.5, 0.25), ("1s", 4, 0.25, 0.25))
    },
    "calibration": {"n": 4, "temperature": 2.5, "nll_before": 0.9, "nll_after": 0.45, "ece_before": 0.2,
                    "ece_after": 0.05},
    "dev_calibration": {"n": 4, "temperature": 2.5, "nll_before": 0.8, "nll_after": 0.4, "ece_before": 0.25,
                        "ece_after": 0.02},
}
CONFUSION_MD = ("## LID (mlp_attn)\n\n| ref \\ hyp | hi | it | total | recall |\n|---|---:|---:|---:|---:|\n"
                "| **hi** | 2 | 0 | 2 | 100.0% |\n| **it** | 1 | 1 | 2 | 50.0% |\n\n"
                "## Whisper <|lang|> (restricted)\n\n| ref \\ hyp | hi | it | total | recall |\n")


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _strategy(routing_dir: Path, name: str) -> None:
    """score.py's and route_decode's outputs of one strategy; base has hyp_lang only (it routes nowhere)."""
    wer, cer, wer_hi, wer_it, jobs, routed = STRATEGIES[name]
    directory = routing_dir / name
    by_category = {"hi": {"num_utts": 2, "wer": wer_hi, "cer": 1.0}, "it": {"num_utts": 2, "wer": wer_it, "cer": 1.0}}
    _json(directory / "score" / "scores.json", {"wer": wer, "cer": cer, "by_category": by_category})
    for number, (utterances, seconds) in enumerate(jobs, 1):
        stats = {"utterances": utterances, "decode_seconds": seconds, "strategy": name,
                 "tau": 0.7 if name == "threshold" else None}
        _json(directory / "logdir" / f"output.{number}" / "stats.json", stats)
    write_map(directory / "hyp_lang", routed)
    if name != "base":
        # every line a mixture, as soft writes them: LANG is the adapter of largest weight
        weights = {"hi": "hi:0.6 it:0.4", "it": "hi:0.4 it:0.6"}
        write_map(directory / "routing", {utt: f"{lang} {weights[lang]}" for utt, lang in routed.items()})


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """exp/{routing_t, m_lid_t}, data/test/utt2lang, with every strategy; returns tmp_path."""
    routing_dir = tmp_path / "exp" / "routing_t"
    for name in STRATEGIES:
        _strategy(routing_dir, name)
    _json(routing_dir / "tau_selection.json", TAU_SELECTION)
    eval_dir = tmp_path / "exp" / "m_lid_t" / "eval_test"
    _json(eval_dir / "results.json", LID_RESULTS)
    _json(eval_dir / "timing.json", TIMING)
    (eval_dir / "confusion.md").write_text(CONFUSION_MD, encoding="utf-8")
    (eval_dir / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_map(tmp_path / "data" / "test" / "utt2lang", TRUTH)
    return tmp_path


def _run(root: Path, *extra: str) -> int:
    return routing_report.main([
        "--routing_dir", str(root / "exp/routing_t"), "--lid_dir", str(root / "exp/m_lid_t"),
        "--utt2lang", str(root / "data/test/utt2lang"), "--out_md", str(root / "report/routing.md"),
        "--out_png", str(root / "report/routing.png"), *extra,
    ])


def table(markdown: str, header_start: str) -> dict[str, dict[str, str]]:
    """The markdown table whose header starts with ``header_start``: first cell -> {column: cell}."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = lines[start][1:-1].split("|")
    assert lines[start + 1].count("|") == len(header) + 1, "the separator row has another number of columns"
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = line[1:-1].split("|")
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def column(rows: dict[str, dict[str, str]], name: str) -> list[str]:
    """One column of :func:`table`'s rows, top to bottom."""
    return [row[name] for row in rows.values()]


def test_strategy_table_numbers_come_from_the_inputs(exp: Path) -> None:
    assert _run(exp) == 0
    md = (exp / "report/routing.md").read_text(encoding="utf-8")
    rows = table(md, "|strategy|WER|CER|")
    assert list(rows) == ["oracle", "hard", "soft", "threshold (τ=0.7)", "base"]
    hard, base = rows["hard"], rows["base"]
    assert (hard["WER"], hard["CER"], hard["WER hi"], hard["WER it"]) == ("10.4", "4.2", "8.8", "12.0")
    assert column(rows, "routing acc.") == ["100.0", "75.0", "50.0", "100.0", "75.0"]
    assert column(rows, "WER gap vs oracle") == ["+0.0%", "+4.0%", "+10.0%", "+2.0%", "+100.0%"]
    assert column(rows, "decode ms/utt") == ["100.00", "105.00", "115.00", "100.00", "95.00"]
    assert column(rows, "LID ms/utt") == ["0 (true language)", "2.50", "2.50", "2.50", "0 (in decode)"]
    assert column(rows, "overhead ms/utt vs oracle") == ["+0.00", "+7.50", "+17.50", "+2.50", "-5.00"]
    assert base["WER"] == "20.0"
    gaps = table(md, "|strategy|pooled|")
    assert (gaps["hard"]["pooled"], gaps["hard"]["hi"], gaps["hard"]["it"]) == ("+4.0%", "+10.0%", "+0.0%")
    assert "eval_lid measured that step alone at 7.00 ms/utt" in md  # base: Whisper's detection, not added


def test_targets_are_checked_against_the_numbers(exp: Path) -> None:
    assert _run(exp) == 0
    md = (exp / "report/routing.md").read_text(encoding="utf-8")
    assert "< 5% relative pooled WER degradation vs oracle and < 10 ms/utt" in md
    verdicts = {line[2:].split(":")[0]: line for line in md.splitlines() if line.startswith("- ")}
    assert "oracle" not in verdicts
    assert verdicts["hard"] == "- hard: WER met (+4.0%)"
    assert verdicts["soft"] == "- soft: WER missed (+10.0%)"
    assert verdicts["threshold (τ=0.7)"] == "- threshold (τ=0.7): WER met (+2.0%)"
    assert verdicts["base"] == "- base: WER missed (+100.0%)"
    # one timing of the decodes gets no latency verdict (soft's +17.5 ms is above the 10 ms target)
    assert "overhead met" not in md and "overhead missed" not in md and "gets no verdict" in md
    # a looser WER target turns the same numbers into a pass
    assert _run(exp, "--max_wer_gap", "150", "--max_overhead_ms", "20") == 0
    md = (exp / "report/routing.md").read_text(encoding="utf-8")
    assert "< 150% relative" in md and "< 20 ms/utt" in md and "WER missed" not in md


def test_tau_table_marks_the_chosen_tau(exp: Path) -> None:
    assert _run(exp) == 0
    taus = table((exp / "report/routing.md").read_text(encoding="utf-8"), "|τ|dev WER|")
    assert {tau: row["chosen"] for tau, row in taus.items()} == {"0.5": "", "0.7": "**chosen**", "0.9": ""}
    assert (taus["0.7"]["dev WER"], taus["0.7"]["dev CER"]) == ("10.5", "4.6")


def test_lid_section_and_figures(exp: Path) -> None:
    assert _run(exp) == 0
    md = (exp / "report/routing.md").read_text(encoding="utf-8")
    assert md.startswith("## Language ID\n") and "\n## Adapter routing\n" in md
    systems = table(md, "|system|accuracy|")
    assert systems["lid"] == {"system": "lid", "accuracy": "75.0", "macro-F1": "73.3", "n": "4"}
    assert systems["majority (hi)"]["accuracy"] == "50.0"
    crops = table(md, "|crop|")
    assert list(crops) == ["1 s", "2 s", "full"]
    assert (crops["2 s"]["utterances cut"], crops["2 s"]["lid"], crops["2 s"]["whisper"]) == ("3", "50.0", "25.0")
    assert "T = 2.50 fitted on dev" in md
    assert "dev NLL 0.800 → 0.400, ECE 25.0 → 2.0%; test NLL 0.900 → 0.450, ECE 20.0 → 5.0%." in md
    assert "### Confusion: LID (mlp_attn)" in md and "| **it** | 1 | 1 | 2 | 50.0% |" in md
    assert "Whisper <|lang|>" not in md  # only the LID's confusion table
    assert "![confusion](../exp/m_lid_t/eval_test/confusion.png)" in md
    assert "![routing](routing.png)" in md
    assert (exp / "report/routing.png").read_bytes().startswith(b"\x89PNG")


def test_missing_oracle_gives_na(exp: Path, caplog: pytest.LogCaptureFixture) -> None:
    (exp / "exp/routing_t/oracle").rename(exp / "exp/routing_t/.oracle")
    with caplog.at_level(logging.WARNING):
        assert _run(exp, "--strategies", "oracle", "hard", "base") == 0
    assert "strategy oracle not reported" in caplog.text
    md = (exp / "report/routing.md").read_text(encoding="utf-8")
    rows = table(md, "|strategy|WER|CER|")
    assert list(rows) == ["hard", "base"]
    assert set(column(rows, "WER gap vs oracle")) == {"n/a"}
    assert set(column(rows, "overhead ms/utt vs oracle")) == {"n/a"}
    assert rows["hard"]["routing acc."] == "75.0"
    assert set(table(md, "|strategy|pooled|")["hard"].values()) == {"hard", "n/a"}
    assert "- hard: n/a (no oracle)" in md
    assert "|τ|" not in md  # threshold not reported: no tau selection needed


@pytest.mark.parametrize("relative, content", [
    ("exp/routing_t/soft/score/scores.json", "{not json"),
    ("exp/routing_t/hard/logdir/output.2/stats.json", '{"utterances": "three", "decode_seconds": 1}'),
    ("exp/routing_t/tau_selection.json", '{"candidates": [{"tau": 0.5, "dev_wer": 1, "dev_cer": 1}], "chosen": 0.7}'),
    ("exp/m_lid_t/eval_test/timing.json", None),
])
def test_bad_or_missing_json_names_the_file(
    exp: Path, caplog: pytest.LogCaptureFixture, relative: str, content: str | None
) -> None:
    path = exp / relative
    if content is None:
        path.unlink()
    else:
        path.write_text(content, encoding="utf-8")
    assert _run(exp) == 1
    assert str(path) in caplog.text
    assert not (exp / "report/routing.md").exists()


def test_routing_file_with_unknown_utterance_is_an_error(exp: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = exp / "exp/routing_t/hard/routing"
    write_map(path, {"u1": "hi hi:1 it:0", "zz": "hi hi:1 it:0"})
    assert _run(exp) == 1
    assert f"{path}: 1 utterance(s) not in the utt2lang, e.g. zz" in caplog.text


def test_relative_gap_is_undefined_without_a_positive_oracle() -> None:
    assert relative_gap(10.5, 10.0) == pytest.approx(5.0)
    assert relative_gap(1.0, 0.0) is None
    assert relative_gap(None, 10.0) is None


def test_no_strategy_found_is_an_error(exp: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An empty report must not overwrite a good one when --routing_dir is wrong."""
    assert routing_report.main([
        "--routing_dir", str(exp / "exp/nowhere"), "--lid_dir", str(exp / "exp/m_lid_t"),
        "--utt2lang", str(exp / "data/test/utt2lang"), "--out_md", str(exp / "r.md"), "--out_png", str(exp / "r.png"),
    ]) == 1
    assert f"{exp / 'exp/nowhere'}: none of the strategies" in caplog.text
    assert not (exp / "r.md").exists()


def test_uncertain_subset_table(exp: Path) -> None:
    """u1 and u3 are below the chosen tau 0.7: the table's rates are those two utterances' counts."""
    from espnet_adapters.scoring.per_utt import COLUMNS

    eval_dir = exp / "exp" / "m_lid_t" / "eval_test"
    write_map(eval_dir / "posteriors", {"u1": "hi:0.6 it:0.4", "u2": "hi:0.9 it:0.1", "u3": "hi:0.45 it:0.55",
                                        "u4": "hi:0.2 it:0.8"})
    # word errors per utterance (10 words, 40 characters each; char errors = 2 x word errors)
    errors = {"oracle": (1, 1, 1, 1), "hard": (4, 0, 6, 1), "soft": (2, 0, 3, 1), "threshold": (2, 0, 3, 1)}
    for name, per_utt in errors.items():
        rows = ["\t".join(COLUMNS)]
        for utt, err in zip(TRUTH, per_utt):
            rows.append("\t".join(map(str, (utt, 10, 10 - err, err, 0, 0, err, 40, 40 - 2 * err, 2 * err, 0, 0,
                                             2 * err))))
        (exp / "exp" / "routing_t" / name / "score" / "per_utt.tsv").write_text("\n".join(rows) + "\n")
    assert _run(exp) == 0
    markdown = (exp / "report" / "routing.md").read_text(encoding="utf-8")
    assert "2 of 4 test utterances" in markdown
    rows = table(markdown, "|strategy|WER|Δ WER")
    assert list(rows) == ["oracle", "hard", "soft", "threshold"]  # base has no per_utt.tsv here
    assert column(rows, "WER") == ["10.0", "50.0", "25.0", "25.0"]  # (1+1)/20, (4+6)/20, (2+3)/20
    assert rows["hard"]["Δ WER vs hard [95% CI]"] == "–"
    assert rows["soft"]["Δ WER vs hard [95% CI]"].startswith("-25.0 [")
    assert rows["soft"]["CER"] == "12.5"  # 2 x (2+3) character errors of 80
