"""Tests of the paired bootstrap, per_utt.tsv and the adapters-vs-base table built on them."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from espnet_adapters.bin import make_results, score
from espnet_adapters.scoring.bootstrap import paired_bootstrap
from espnet_adapters.scoring.per_utt import paired_counts, read_per_utt
from espnet_adapters.scoring.results import Environment, find_entries, render_results
from espnet_adapters.scoring.timing import read_timing
from fixtures.decoding import write_decode_stats
from espnet_adapters.utils.cli import UserInputError

ENV = Environment(
    date="2026-01-02 03:04:05 UTC", git_commit="abc1234", python="3.11.7",
    torch="2.5.0", transformers="5.23.0", espnet="202511", cpu_count=8,
)


# --- the bootstrap -------------------------------------------------------------------


def _rates(ref: np.ndarray, errors: np.ndarray, index: np.ndarray) -> np.ndarray:
    return 100.0 * errors[index].sum(axis=-1) / ref[index].sum(axis=-1)


def test_clear_improvement_excludes_zero() -> None:
    rng = np.random.default_rng(123)
    ref = rng.integers(5, 20, size=60)
    base = np.minimum(ref, rng.integers(2, 8, size=60))
    system = np.maximum(0, base - rng.integers(1, 4, size=60))
    result = paired_bootstrap(ref, base, system)
    assert result.base_rate == pytest.approx(100.0 * base.sum() / ref.sum())
    assert result.system_rate == pytest.approx(100.0 * system.sum() / ref.sum())
    assert result.difference.estimate == pytest.approx(result.system_rate - result.base_rate)
    assert result.difference.low < result.difference.estimate < result.difference.high < 0
    assert result.difference.excludes_zero
    assert result.relative is not None and result.relative.high < 0
    assert result.relative.estimate == pytest.approx(100.0 * (system.sum() - base.sum()) / base.sum())


def test_identical_systems_include_zero() -> None:
    ref, errors = np.array([10, 12, 8, 9, 11]), np.array([3, 0, 5, 1, 2])
    same = paired_bootstrap(ref, errors, errors.copy())
    assert (same.difference.estimate, same.difference.low, same.difference.high) == (0.0, 0.0, 0.0)
    assert same.difference.contains(0.0) and not same.difference.excludes_zero
    # The same total errors spread differently: no difference overall, a real spread of resamples.
    ref = np.full(40, 10)
    base = np.tile([0, 1, 2, 3, 4, 5, 6, 7], 5)
    shuffled = np.random.default_rng(7).permutation(base)
    result = paired_bootstrap(ref, base, shuffled)
    assert result.difference.estimate == 0.0
    assert result.difference.low < 0 < result.difference.high
    assert not result.difference.excludes_zero


def test_bootstrap_is_paired() -> None:
    """Utterance difficulty varies a lot, but the system is better by exactly one error
    per utterance: paired resamples see -10 points every time, unpaired ones do not."""
    rng = np.random.default_rng(5)
    ref = np.full(50, 10)
    base = rng.integers(1, 10, size=50)
    system = base - 1
    result = paired_bootstrap(ref, base, system, num_resamples=500)
    assert result.difference.estimate == pytest.approx(-10.0)
    assert result.difference.high - result.difference.low < 1e-9
    assert result.difference.excludes_zero
    # What resampling each system on its own would give: a wide interval around -10 that includes 0.
    first, second = rng.integers(0, 50, size=(2, 500, 50))
    unpaired = _rates(ref, system, second) - _rates(ref, base, first)
    low, high = np.percentile(unpaired, [2.5, 97.5])
    assert high - low > 10.0 and low < 0 < high
    # Unequal lengths: a shift of one error per utterance still gives a narrow interval.
    ref = rng.integers(8, 13, size=50)
    narrow = paired_bootstrap(ref, np.minimum(base, ref), np.minimum(base, ref) - 1)
    assert narrow.difference.high - narrow.difference.low < 1.5


def test_bootstrap_matches_a_naive_bootstrap() -> None:
    """Against a separate pure-Python bootstrap (its own generator, many resamples)."""
    ref = np.array([10] * 10)
    base = np.array([4, 4, 3, 3, 3, 1, 1, 1, 1, 1])
    system = np.array([3, 2, 1, 1, 1, 1, 1, 1, 0, 0])
    result = paired_bootstrap(ref, base, system, num_resamples=4000)
    generator = random.Random(1)
    naive = []
    for _ in range(20000):
        index = [generator.randrange(10) for _ in range(10)]
        words = sum(int(ref[i]) for i in index)
        naive.append(100.0 * (sum(int(system[i]) for i in index) - sum(int(base[i]) for i in index)) / words)
    low, high = np.percentile(naive, [2.5, 97.5])
    assert result.difference.low == pytest.approx(low, abs=1.0)
    assert result.difference.high == pytest.approx(high, abs=1.0)


def test_bootstrap_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    ref, base, system = rng.integers(5, 15, size=30), rng.integers(0, 5, size=30), rng.integers(0, 5, size=30)
    assert paired_bootstrap(ref, base, system, seed=3) == paired_bootstrap(ref, base, system, seed=3)
    assert paired_bootstrap(ref, base, system, seed=3) != paired_bootstrap(ref, base, system, seed=4)


def test_bootstrap_edge_cases() -> None:
    no_base_errors = paired_bootstrap([5, 5], [0, 0], [1, 0])
    assert no_base_errors.relative is None and no_base_errors.difference.estimate == 10.0
    # Some resamples have no base errors: the relative interval is undefined, the difference is not.
    rare = paired_bootstrap([5, 5, 5], [1, 0, 0], [0, 0, 0])
    assert rare.relative is not None and not rare.relative.defined and rare.difference.defined
    with pytest.raises(ValueError, match="one value per utterance"):
        paired_bootstrap([1, 2], [0], [0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        paired_bootstrap([1, 2], [0, -1], [0, 0])
    with pytest.raises(ValueError, match="no tokens"):
        paired_bootstrap([0, 0], [1, 0], [0, 0])
    with pytest.raises(ValueError, match="no utterances"):
        paired_bootstrap([], [], [])


# --- per_utt.tsv ----------------------------------------------------------------------

HEADER = (
    "utt_id\tref_words\tword_hits\tword_sub\tword_del\tword_ins\tword_errors"
    "\tref_chars\tchar_hits\tchar_sub\tchar_del\tchar_ins\tchar_errors"
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("u1\t2\t2\t0\t0\t0\t0\t3\t3\t0\t0\t0", r":3: expected 13 tab-separated fields, got 12"),
        ("u1\t2\t1\t0\t0\t0\t0\t3\t3\t0\t0\t0\t0", r":3: inconsistent word counts"),
        ("u1\t2\t2\t0\t0\t1\t0\t3\t3\t0\t0\t0\t0", r":3: inconsistent word counts"),
        ("u1\t2\t2\t0\t0\t0\t0\t3\t2\t0\t0\t0\t0", r":3: inconsistent char counts"),
        ("u1\t2\tx\t0\t0\t0\t0\t3\t3\t0\t0\t0\t0", r":3: counts must be integers"),
        ("u0\t2\t2\t0\t0\t0\t0\t3\t3\t0\t0\t0\t0", r":3: utterance u0 already on line 2"),
    ],
)
def test_bad_per_utt_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "per_utt.tsv", f"{HEADER}\nu0\t2\t2\t0\t0\t0\t0\t3\t3\t0\t0\t0\t0\n{line}\n")
    with pytest.raises(UserInputError, match=rf"^{path}{message}"):
        read_per_utt(path)


def test_per_utt_without_header_or_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "per_utt.tsv", "u0\t2\t2\t0\t0\t0\t0\t3\t3\t0\t0\t0\t0\n")
    with pytest.raises(UserInputError, match=rf"^{path}:1: expected the header"):
        read_per_utt(path)
    _write(path, HEADER + "\n")
    with pytest.raises(UserInputError, match=rf"^{path}: no utterances"):
        read_per_utt(path)


def _score_dir(root: Path, model: str, set_name: str, refs: dict[str, str], hyps: dict[str, str]) -> Path:
    """Score ``hyps`` against ``refs`` with the real CLI into exp/<model>/decode_<set>/score."""
    ref = _write(root / "dump" / set_name / "text", "".join(f"{k} {v}\n" for k, v in refs.items()))
    decode = root / "exp" / model / f"decode_{set_name}"
    hyp = _write(decode / "hyp", "".join(f"{k} {v}\n" for k, v in hyps.items()))
    lang = set_name.split("_")[0]
    argv = ["--ref_text", str(ref), "--hyp_text", str(hyp), "--lang", lang, "--out_dir", str(decode / "score")]
    assert score.main(argv) == 0
    write_decode_stats(decode)
    return decode / "score"


REFS = {f"u{i}": text for i, text in enumerate(["uno due tre", "quattro cinque", "sei sette otto nove", "dieci"])}


def test_per_utt_adds_up_and_pairs_by_id(tmp_path: Path) -> None:
    base = _score_dir(tmp_path, "m", "it_test", REFS, {"u0": "uno tre", "u1": "quattro cinque x", "u3": "dieci"})
    counts = read_per_utt(base / "per_utt.tsv")
    scores = json.loads((base / "scores.json").read_text(encoding="utf-8"))
    assert counts.utt_ids == ("u0", "u1", "u2", "u3")
    assert counts.total("word") == scores["word_counts"] and counts.total("char") == scores["char_counts"]
    assert list(counts.column("word", "errors")) == [1, 1, 4, 0]
    # Another decoding's rows in another order are aligned by utterance id.
    lines = (base / "per_utt.tsv").read_text(encoding="utf-8").splitlines()
    other = _write(tmp_path / "other" / "per_utt.tsv", "\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    _, aligned = paired_counts(counts, read_per_utt(other))
    assert np.array_equal(aligned.counts, counts.counts)


def test_pairing_different_test_sets_names_file_and_line(tmp_path: Path) -> None:
    base = read_per_utt(_score_dir(tmp_path, "m", "it_test", REFS, {}) / "per_utt.tsv")
    fewer = _score_dir(tmp_path / "b", "m", "it_test", {k: REFS[k] for k in ("u0", "u1", "u3")}, {})
    with pytest.raises(UserInputError, match=rf"^{base.path}:4: utterance u2 is not in {fewer / 'per_utt.tsv'}"):
        paired_counts(base, read_per_utt(fewer / "per_utt.tsv"))
    other_text = _score_dir(tmp_path / "c", "m", "it_test", {**REFS, "u1": "quattro"}, {})
    with pytest.raises(UserInputError, match=rf"^{other_text / 'per_utt.tsv'}:3: utterance u1 has 1 reference words, "
                                             rf"{base.path}:3 has 2"):
        paired_counts(base, read_per_utt(other_text / "per_utt.tsv"))


# --- the adapters-vs-base table --------------------------------------------------------

LOOP = " ".join(["la la la"] * 4)  # a decoder stuck in a loop: 12 words of insertions and substitutions


def _adapter_exp(root: Path) -> None:
    """pa: base and adapter both hallucinate (WER and CER > 100%, the adapter less);
    it: the adapter fixes a base that hallucinates (WER from > 100% to 0)."""
    pa_refs = {f"p{i}": "ਪੰਜਾਬੀ ਬੋਲੀ" for i in range(6)}
    _score_dir(root, "whisper_base", "pa_test", pa_refs, {k: LOOP for k in pa_refs})
    shorter_loop = "ਪੰਜਾਬੀ " + " ".join(["la"] * 6)
    _score_dir(root, "whisper_base_lora_pa_r8", "pa_test", pa_refs, {k: shorter_loop for k in pa_refs})
    _score_dir(root, "whisper_base", "it_test", REFS, {k: LOOP for k in REFS})
    _score_dir(root, "whisper_base_lora_it_r8", "it_test", REFS, REFS)


def _row(text: str, prefix: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return line.split("|")[1:-1]


def test_no_gain_between_two_rates_over_100(tmp_path: Path) -> None:
    _adapter_exp(tmp_path)
    entries = find_entries(tmp_path / "exp")
    text = render_results(entries, ENV)
    header = _row(text, "|test set|")
    assert header == ["test set", "n", "base model", "adapter", "WER", "ΔWER [95% CI]", "rel. WER [95% CI]",
                      "CER", "ΔCER [95% CI]", "rel. CER [95% CI]", "Corr", "ΔCorr [95% CI]"]
    pa = dict(zip(header, _row(text, "|pa_test|"), strict=True))
    base, adapter = (next(e for e in entries if e.model == m and e.lang == "pa")
                     for m in ("whisper_base", "whisper_base_lora_pa_r8"))
    assert base.wer > adapter.wer > 100 and base.cer > adapter.cer > 100  # the fixture is what it claims
    assert pa["WER"] == f"{base.wer:.1f} → {adapter.wer:.1f}"
    for column in ("ΔWER [95% CI]", "rel. WER [95% CI]", "ΔCER [95% CI]", "rel. CER [95% CI]"):
        assert pa[column] == "n/a (both > 100%)"
    relative = f"{100 * (adapter.wer - base.wer) / base.wer:+.1f}%"
    assert relative.startswith("-") and relative not in text  # the old table's "gain" is gone
    # Corr still compares them: 0 -> 50% of the words recognised, in every resample.
    assert pa["Corr"] == "0.0 → 50.0" and pa["ΔCorr [95% CI]"] == "+50.0 [+50.0, +50.0]"
    assert "n/a (both > 100%): base and adapter both make more errors than there are reference words" in text
    # Base over 100%, adapter not: the change is reported, with its interval.
    it = dict(zip(header, _row(text, "|it_test|"), strict=True))
    assert it["ΔWER [95% CI]"].startswith("-") and it["rel. WER [95% CI]"] == "-100.0% [-100.0%, -100.0%]"
    assert it["Corr"] == "0.0 → 100.0"


def test_ci_row_and_legend(tmp_path: Path) -> None:
    refs = {f"u{i:02d}": "a b c d e" for i in range(30)}
    base_hyps = {k: ("a b c d e" if i % 3 == 0 else "a x c y e") for i, k in enumerate(refs)}  # 2 of 3 wrong
    adapter_hyps = {k: ("a b c d e" if i % 3 else "a x c d e") for i, k in enumerate(refs)}
    _score_dir(tmp_path, "whisper_base", "it_test", refs, base_hyps)
    _score_dir(tmp_path, "whisper_base_lora_it_r8", "it_test", refs, adapter_hyps)
    text = render_results(find_entries(tmp_path / "exp"), ENV, num_resamples=200, seed=11)
    row = _row(text, "|it_test|")
    assert row[:5] == ["it_test", "30", "whisper_base", "r8", "26.7 → 6.7"]
    delta, low, high = (float(v) for v in row[5].replace("[", "").replace("]", "").replace(",", "").split())
    assert delta == -20.0 and low <= delta <= high < 0  # a clear improvement: the interval excludes 0
    assert row[6].startswith("-75.0% [")
    assert "paired bootstrap over the test utterances (200 resamples with replacement, seed 11," in text
    assert "Corr: words correct, % of reference words recognised (hits / reference words, sclite's Corr)" in text
    assert render_results(find_entries(tmp_path / "exp"), ENV, num_resamples=200, seed=11) == text
    assert "CI n/a" not in text and "both > 100%" not in text


def test_scores_without_per_utt_show_no_interval(tmp_path: Path) -> None:
    _adapter_exp(tmp_path)
    (tmp_path / "exp" / "whisper_base" / "decode_it_test" / "score" / "per_utt.tsv").unlink()
    scores = tmp_path / "exp" / "whisper_base" / "decode_it_test" / "score" / "scores.json"
    data = json.loads(scores.read_text(encoding="utf-8"))
    del data["per_utt"], data["corr"]  # as scored before per_utt.tsv existed
    scores.write_text(json.dumps(data), encoding="utf-8")
    text = render_results(find_entries(tmp_path / "exp"), ENV)
    assert _row(text, "|it_test|")[5].endswith(" [CI n/a]")
    assert "CI n/a: a decoding scored without score/per_utt.tsv" in text


def test_stale_or_missing_per_utt_names_the_file(tmp_path: Path) -> None:
    _adapter_exp(tmp_path)
    score_dir = tmp_path / "exp" / "whisper_base" / "decode_it_test" / "score"
    lines = (score_dir / "per_utt.tsv").read_text(encoding="utf-8").splitlines()
    _write(score_dir / "per_utt.tsv", "\n".join(lines[:-1]) + "\n")  # one utterance short
    with pytest.raises(UserInputError, match=rf"^{score_dir / 'per_utt.tsv'}: does not add up to "
                                             rf"{score_dir / 'scores.json'} \(num_utts: 3 vs 4\)"):
        find_entries(tmp_path / "exp")
    (score_dir / "per_utt.tsv").unlink()
    with pytest.raises(UserInputError, match=rf"^{score_dir / 'scores.json'}: per_utt names"):
        find_entries(tmp_path / "exp")


def test_make_results_refuses_unpaired_decodings(tmp_path: Path) -> None:
    _score_dir(tmp_path, "whisper_base", "it_test", REFS, REFS)
    _score_dir(tmp_path / "other", "whisper_base_lora_it_r8", "it_test", {**REFS, "u9": "extra"}, REFS)
    (tmp_path / "other" / "exp" / "whisper_base_lora_it_r8").rename(tmp_path / "exp" / "whisper_base_lora_it_r8")
    out = _write(tmp_path / "RESULTS.md", "old\n")
    argv = ["--exp_dir", str(tmp_path / "exp"), "--out", str(out)]
    assert make_results.main(argv) == 1
    assert out.read_text(encoding="utf-8") == "old\n"
    assert make_results.main([*argv, "--bootstrap_resamples", "0"]) == 1


def test_make_results_cli_bootstrap_options(tmp_path: Path) -> None:
    _adapter_exp(tmp_path)
    out = tmp_path / "RESULTS.md"
    argv = ["--exp_dir", str(tmp_path / "exp"), "--out", str(out), "--bootstrap_resamples", "300"]
    assert make_results.main([*argv, "--bootstrap_seed", "5"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "(300 resamples with replacement, seed 5," in text
    assert "|pa_test|6|whisper_base|r8|" in text


# --- the wall-time section --------------------------------------------------------------

TIMING = (
    "run_started\tstage\tseconds\tstatus\n"
    "2026-12-07T10:00:00\t1\t12\tok\n2026-12-07T10:00:00\t5\t361\tok\n2026-12-07T10:00:00\t6\t75\tfailed\n"
    "2026-12-07T11:00:00\t5\t0\tok\n2026-12-07T11:00:00\t6\t3725\tok\n2026-12-07T11:00:00\t7\t59\tok\n"
)


def test_make_results_wall_time_section(tmp_path: Path) -> None:
    _adapter_exp(tmp_path)
    timing = _write(tmp_path / "exp" / "log" / "timing.tsv", TIMING)
    out = tmp_path / "RESULTS.md"
    argv = ["--exp_dir", str(tmp_path / "exp"), "--out", str(out), "--bootstrap_resamples", "50"]
    assert make_results.main(argv) == 0
    assert "## Wall time" not in out.read_text(encoding="utf-8")
    assert make_results.main([*argv, "--timing", str(timing)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "|run started|stage 1|stage 5|stage 6|stage 7|total|" in text
    assert "|2026-12-07T10:00:00|12 s|6:01|1:15 failed||7:28|" in text
    assert "|2026-12-07T11:00:00||0 s|62:05|59 s|63:04|" in text


@pytest.mark.parametrize(("content", "message"), [
    ("", ":1: expected the header"),
    ("run_started\tstage\tseconds\tstatus\n2026\t5\t1.5\tok\n", ":2: expected run_started, stage, seconds"),
    ("run_started\tstage\tseconds\tstatus\nx\t5\t1\tok\nx\t6\t2\tdone\n", ":3: expected run_started"),
])
def test_bad_timing_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    _adapter_exp(tmp_path)
    timing = _write(tmp_path / "timing.tsv", content)
    out = _write(tmp_path / "RESULTS.md", "old\n")
    argv = ["--exp_dir", str(tmp_path / "exp"), "--out", str(out), "--timing", str(timing)]
    with pytest.raises(UserInputError, match=re.escape(f"{timing}{message}")):
        read_timing(timing)
    assert make_results.main(argv) == 1
    assert out.read_text(encoding="utf-8") == "old\n"


def test_compare_scores_pairs_two_systems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """compare_scores: both systems' rates and system - base with the same intervals as RESULTS.md's table;
    a set mismatch, an odd argument count, a missing dir are errors naming what is wrong."""
    from espnet_adapters.bin import compare_scores
    base = _score_dir(tmp_path / "a", "sys_a", "it_test", REFS, {"u0": "uno tre", "u1": "x", "u3": "dieci"})
    system = _score_dir(tmp_path / "b", "sys_b", "it_test", REFS,
                        {"u0": "uno due tre", "u1": "quattro cinque", "u2": "sei sette", "u3": "dieci"})
    assert compare_scores.main([str(base), str(system)]) == 0
    row = capsys.readouterr().out.splitlines()[2]
    cells = row.strip("|").split("|")
    assert cells[:2] == ["it_test", "4"] and cells[2] == "sys_a/decode_it_test" and cells[3] == "sys_b/decode_it_test"
    # 10 reference words: the base misses 7 (3 correct), the system 2 (8 correct)
    assert cells[4] == "70.0 / 75.5 / 30.0" and cells[5].startswith("20.0 / ") and cells[5].endswith(" / 80.0")
    assert re.fullmatch(r"-50\.0 \[-\d+\.\d, [-+]\d+\.\d\]", cells[6])
    assert cells[8].startswith("+50.0 [")
    other = _score_dir(tmp_path / "c", "sys_c", "hi_test", {"u0": "एक"}, {"u0": "एक"})
    assert compare_scores.main([str(base), str(other)]) == 1
    assert compare_scores.main([str(base)]) == 1
    assert compare_scores.main([str(base), str(tmp_path / "nowhere")]) == 1
