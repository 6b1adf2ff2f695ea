"""Tests of the scoring stage: normalisation, WER/CER counts, result.txt, RESULTS.md."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from transformers.models.whisper.english_normalizer import BasicTextNormalizer

from espnet_adapters.bin import make_results, score
from espnet_adapters.scoring.metrics import alignment_lines, score_chars, score_words
from espnet_adapters.scoring.normalize import NORMALIZER_VERSION, normalize_text
from espnet_adapters.scoring.results import Environment, decoding_variant, find_entries, render_results
from fixtures.decoding import write_decode_stats
from espnet_adapters.utils.cli import UserInputError

VIRAMA_HI, VIRAMA_TE = "\u094d", "\u0c4d"

# (lang, raw transcript, expected normalisation, combining marks that must survive)
INDIC_CASES = [
    ("hi", "क्षेत्र में।", "क्षेत्र में", ["\u094d", "\u0947", "\u0902"]),  # virama, e-matra, anusvara
    ("pa", "ਪੱਕਾ ਪੰਜਾਬੀ॥", "ਪੱਕਾ ਪੰਜਾਬੀ", ["\u0a71", "\u0a3e", "\u0a70", "\u0a40"]),  # addak, aa, tippi, ii
    ("te", "తెలుగు భాష్య.", "తెలుగు భాష్య", ["\u0c46", "\u0c41", "\u0c3e", VIRAMA_TE]),  # e, u, aa, virama
]


def _marks(text: str) -> list[str]:
    return [char for char in text if unicodedata.category(char).startswith("M")]


# --- normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "raw", "expected", "marks"), INDIC_CASES)
def test_normalize_keeps_indic_combining_marks(lang: str, raw: str, expected: str, marks: list[str]) -> None:
    normalized = normalize_text(raw, lang)
    assert normalized == expected
    assert _marks(normalized) == _marks(raw)
    for mark in marks:
        assert mark in normalized


@pytest.mark.parametrize(("lang", "raw", "expected", "marks"), INDIC_CASES)
def test_whisper_basic_normalizer_destroys_indic_marks(lang: str, raw: str, expected: str, marks: list[str]) -> None:
    """Why we have our own normaliser: Whisper's deletes every combining mark."""
    destroyed = BasicTextNormalizer()(raw)
    assert _marks(destroyed) == []
    assert destroyed.split() != expected.split()


def test_normalize_nfc_unifies_canonical_spellings() -> None:
    assert normalize_text("\u0958", "hi") == normalize_text("\u0915\u093c", "hi")  # क़ precomposed / nukta
    assert normalize_text("\u0c15\u0c46\u0c56", "te") == normalize_text("\u0c15\u0c48", "te")  # కై
    assert normalize_text("x\u00b2", "it") == "x\u00b2"  # no NFKC: superscript two stays


def test_normalize_removes_zero_width_joiners() -> None:
    assert normalize_text("क्\u200dष", "hi") == "क्ष"
    assert normalize_text("क्\u200cष", "hi") == "क्ष"


def test_normalize_punctuation_and_symbols_become_spaces() -> None:
    assert normalize_text("एक।दो॥ “तीन” «चार» ५%", "hi") == "एक दो तीन चार ५"
    assert normalize_text("  a\t\u00a0b \n", "it") == "a b"


def test_normalize_italian_apostrophe_case_and_digits() -> None:
    assert normalize_text("L'uomo “disse”: «Perché?» 2024", "it") == "l uomo disse perché 2024"
    assert normalize_text("L\u2019uomo", "it") == normalize_text("l'uomo", "it") == normalize_text("l uomo", "it")


def test_normalizer_version_is_recorded() -> None:
    assert NORMALIZER_VERSION


# --- metrics -------------------------------------------------------------------------


def test_word_counts_substitution_and_insertion() -> None:
    report = score_words(["u1"], ["a b c d"], ["a x c d e"])
    counts = report.total
    assert (counts.ref_len, counts.correct, counts.substitutions, counts.deletions, counts.insertions) == (4, 3, 1, 0, 1)
    assert counts.error_rate == 50.0
    assert report.sentence_error_rate == 100.0


def test_empty_hypothesis_is_all_deletions() -> None:
    counts = score_words(["u1"], ["a b c"], [""]).total
    assert (counts.ref_len, counts.deletions, counts.errors) == (3, 3, 3)
    assert counts.error_rate == 100.0


def test_empty_reference_counts_insertions_only() -> None:
    report = score_words(["u1", "u2"], ["", "a b"], ["x y", "a b"])
    assert [utt.counts.insertions for utt in report.utts] == [2, 0]
    assert report.total.ref_len == 2
    assert report.total.error_rate == 100.0
    assert report.sentence_error_rate == 50.0


def test_cer_counts_spaces_and_code_points() -> None:
    merged = score_chars(["u1"], ["ab cd"], ["abcd"]).total
    assert (merged.ref_len, merged.deletions, merged.errors) == (5, 1, 1)
    matra = score_chars(["u1"], ["के"], ["क"]).total  # क + े: two code points
    assert (matra.ref_len, matra.deletions) == (2, 1)


def test_alignment_lines_mark_errors() -> None:
    utt = score_words(["u1"], ["a b c d"], ["a x c d e"]).utts[0]
    assert alignment_lines(utt) == [
        "REF:  a B c d ***",
        "HYP:  a X c d E",
        "Eval:   S     I",
    ]
    deleted = score_words(["u2"], ["one two"], ["one"]).utts[0]
    assert alignment_lines(deleted) == ["REF:  one TWO", "HYP:  one ***", "Eval:     D"]


# --- bin/score -----------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _score_args(tmp_path: Path, ref: Path, hyp: Path) -> list[str]:
    return ["--ref_text", str(ref), "--hyp_text", str(hyp), "--lang", "hi", "--out_dir", str(tmp_path / "score")]


def test_score_cli_outputs(tmp_path: Path) -> None:
    ref = _write(tmp_path / "data" / "hi_test" / "text", "u1 a b c d\nu2 क्षेत्र में।\nu3 एक दो\n")
    hyp = _write(tmp_path / "hyp", "u2 क्षेत्र मे\nu1 A x c d e\n")
    assert score.main(_score_args(tmp_path, ref, hyp)) == 0
    out = tmp_path / "score"

    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["lang"] == "hi"
    assert scores["set"] == "hi_test"
    assert (scores["num_utts"], scores["num_missing_hyps"]) == (3, 1)
    # u1: 1 sub + 1 ins of 4, u2: 1 sub of 2, u3 (missing): 2 del of 2
    assert scores["word_counts"] == {"ref": 8, "cor": 4, "sub": 2, "del": 2, "ins": 1}
    assert scores["wer"] == pytest.approx(100 * 5 / 8)
    assert scores["sentence_error_rate"] == 100.0
    assert scores["normalizer"] == NORMALIZER_VERSION
    chars = scores["char_counts"]
    assert chars["ref"] == len("a b c d") + len("क्षेत्र में") + len("एक दो")
    assert scores["cer"] == pytest.approx(100 * (chars["sub"] + chars["del"] + chars["ins"]) / chars["ref"])

    assert scores["corr"] == 50.0  # 4 of 8 reference words recognised
    assert scores["per_utt"] == "per_utt.tsv"
    # One line per utterance in reference order: u1 1 sub + 1 ins; u2 1 sub, one deleted
    # anusvara; u3 (no hypothesis) every word and character deleted.
    per_utt = (out / "per_utt.tsv").read_text(encoding="utf-8").splitlines()
    assert per_utt == [
        "utt_id\tref_words\tword_hits\tword_sub\tword_del\tword_ins\tword_errors"
        "\tref_chars\tchar_hits\tchar_sub\tchar_del\tchar_ins\tchar_errors",
        "u1\t4\t3\t1\t0\t1\t2\t7\t6\t1\t0\t2\t3",
        f"u2\t2\t1\t1\t0\t0\t1\t{len('क्षेत्र में')}\t{len('क्षेत्र में') - 1}\t0\t1\t0\t1",
        f"u3\t2\t0\t0\t2\t0\t2\t{len('एक दो')}\t0\t0\t{len('एक दो')}\t0\t{len('एक दो')}",
    ]

    assert (out / "ref.norm").read_text(encoding="utf-8") == "u1 a b c d\nu2 क्षेत्र में\nu3 एक दो\n"
    assert (out / "hyp.norm").read_text(encoding="utf-8") == "u1 a x c d e\nu2 क्षेत्र मे\nu3\n"

    result = (out / "result.txt").read_text(encoding="utf-8")
    assert result.startswith(
        "id: (u1)\n"
        "Scores: (#C #S #D #I) 3 1 0 1\n"
        "REF:  a B c d ***\n"
        "HYP:  a X c d E\n"
        "Eval:   S     I\n"
        "\n"
        "id: (u2)\n"
        "Scores: (#C #S #D #I) 1 1 0 0\n"
        "REF:  क्षेत्र में\n"
        "HYP:  क्षेत्र मे\n"
        "Eval:      S\n"  # क्षेत्र is 4 columns wide: marks take none
        "\n"
        "id: (u3)\n"
        "Scores: (#C #S #D #I) 0 0 2 0\n"
        "REF:  एक  दो\n"
        "HYP:  *** ***\n"
        "Eval: D   D\n"
        "\n"
    )
    assert "| Sum/Avg |     3       8 |   50.0   25.0   25.0   12.5   62.5  100.0 |" in result
    assert "%WER 62.50 [ 5 / 8, 1 ins, 2 del, 2 sub ]" in result

    cer_result = (out / "result.cer.txt").read_text(encoding="utf-8")
    assert (
        "Scores: (#C #S #D #I) 6 1 0 2\n"
        "REF:  a <space> B <space> c <space> d ***     ***\n"
        "HYP:  a <space> X <space> c <space> d <space> E\n"
        "Eval:           S                     I       I\n"
    ) in cer_result
    assert "| SPKR    | # Snt   # Chr |" in cer_result


def test_score_extra_hyp_id_names_file_and_line(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref", "u1 a\nu2 b\n")
    hyp = _write(tmp_path / "hyp", "u1 a\nu2 b\nu9 c\n")
    args = score.get_parser().parse_args(_score_args(tmp_path, ref, hyp))
    with pytest.raises(UserInputError, match=rf"^{hyp}:3: utterance u9 is not in the reference"):
        score.run(args)
    assert score.main(_score_args(tmp_path, ref, hyp)) == 1
    assert not (tmp_path / "score" / "scores.json").exists()


def test_score_all_empty_references_is_an_error(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref", "u1 ।\n")
    hyp = _write(tmp_path / "hyp", "u1 a\n")
    args = score.get_parser().parse_args(_score_args(tmp_path, ref, hyp))
    with pytest.raises(UserInputError, match="empty after normalisation"):
        score.run(args)


# --- RESULTS.md ----------------------------------------------------------------------


def _scores(lang: str, set_name: str, num_utts: int, words: list[int], chars: list[int], ser: float) -> dict:
    def counts(values: list[int]) -> dict[str, int]:
        return dict(zip(["ref", "cor", "sub", "del", "ins"], values))

    return {
        "lang": lang,
        "set": set_name,
        "num_utts": num_utts,
        "num_missing_hyps": 0,
        "wer": 100.0 * sum(words[2:]) / words[0],
        "cer": 100.0 * sum(chars[2:]) / chars[0],
        "word_counts": counts(words),
        "char_counts": counts(chars),
        "sentence_error_rate": ser,
        "normalizer": NORMALIZER_VERSION,
    }


PER_UTT_HEADER = (
    "utt_id\tref_words\tword_hits\tword_sub\tword_del\tword_ins\tword_errors"
    "\tref_chars\tchar_hits\tchar_sub\tchar_del\tchar_ins\tchar_errors\n"
)


def _per_utt_tsv(num_utts: int, words: list[int], chars: list[int]) -> str:
    """A per_utt.tsv whose totals are ``words``/``chars`` (ref, cor, sub, del, ins): each
    count spread over the utterances, the remainder on the first ones."""
    def spread(total: int) -> list[int]:
        return [total // num_utts + (i < total % num_utts) for i in range(num_utts)]

    columns = []
    for ref, _, sub, dele, ins in (words, chars):
        refs, subs, dels, inss = spread(ref), spread(sub), spread(dele), spread(ins)
        columns.append([(r, r - s - d, s, d, i, s + d + i) for r, s, d, i in zip(refs, subs, dels, inss)])
    lines = [
        "\t".join([f"utt{index:02d}", *(str(v) for v in (*word, *char))])
        for index, (word, char) in enumerate(zip(*columns))
    ]
    return PER_UTT_HEADER + "\n".join(lines) + "\n"


def _fake_exp(exp: Path) -> None:
    tree = {
        "whisper_base/decode_hi_test": _scores("hi", "hi_test", 10, [100, 80, 15, 5, 2], [500, 450, 30, 20, 10], 60.0),
        "whisper_base/decode_it_test": _scores("it", "it_test", 8, [50, 45, 4, 1, 0], [300, 290, 6, 4, 3], 25.0),
        "whisper_base/decode_hi_test_beam5": _scores("hi", "hi_test", 10, [100, 85, 10, 5, 1], [500, 470, 20, 10, 5], 50.0),
        "whisper_base_lora_hi_r32_qv_dec/decode_hi_test": _scores("hi", "hi_test", 10, [100, 90, 8, 2, 1], [500, 490, 6, 4, 2], 30.0),
        ".lora_tmp/decode_te_test": _scores("te", "te_test", 5, [10, 0, 10, 0, 0], [50, 0, 50, 0, 0], 100.0),
    }
    for decode, data in tree.items():
        _write(exp / decode / "score" / "scores.json", json.dumps(data))
        write_decode_stats(exp / decode, {"beam_size": 5} if decode.endswith("_beam5") else None)
    # Scored with per-utterance counts (the bootstrap's input): the hi_test base and adapter.
    for decode in ("whisper_base/decode_hi_test", "whisper_base_lora_hi_r32_qv_dec/decode_hi_test"):
        data = tree[decode]
        words, chars = (list(data[key].values()) for key in ("word_counts", "char_counts"))
        _write(exp / decode / "score" / "per_utt.tsv", _per_utt_tsv(data["num_utts"], words, chars))
    (exp / "whisper_base_lora_hi_r32_qv_dec" / "decode_pa_test" / "score").mkdir(parents=True)  # decoded, not scored
    (exp / "whisper_base_lora_pa_r32_qv_dec").mkdir()  # trained, never decoded


ENV = Environment(
    date="2026-01-02 03:04:05 UTC", git_commit="abc1234", python="3.11.7",
    torch="2.5.0", transformers="5.23.0", espnet="202511", cpu_count=8,
)

EXPECTED_RESULTS = f"""\
<!-- Generated by espnet_adapters.bin.make_results; edits are overwritten. -->
# RESULTS

## Environments
- date: `2026-01-02 03:04:05 UTC`
- git commit: `abc1234`
- python version: `3.11.7`
- pytorch version: `2.5.0`
- transformers version: `5.23.0`
- espnet version: `202511`
- CPU count: `8`
- text normalizer: `{NORMALIZER_VERSION}`
- how to reproduce: `./run.sh --stage 7`

## Adapters vs base: decoding `default`

Each language's LoRA adapter on its own test set against the base model; rates in %, base → adapter.

|test set|n|base model|adapter|WER|ΔWER [95% CI]|rel. WER [95% CI]|CER|ΔCER [95% CI]|rel. CER [95% CI]|Corr|ΔCorr [95% CI]|
|---|---|---|---|---|---|---|---|---|---|---|---|
|hi_test|10|whisper_base|r32_qv_dec|22.0 → 11.0|-11.0 [-16.0, -6.0]|-50.0% [-65.0%, -33.3%]|12.0 → 2.4|-9.6 [-11.0, -8.2]|-80.0% [-91.7%, -68.3%]|80.0 → 90.0|+10.0 [+5.0, +15.0]|

Corr: words correct, % of reference words recognised (hits / reference words, sclite's Corr). Δ: adapter - base in points; rel.: (adapter - base) / base. [95% CI]: paired bootstrap over the test utterances (1000 resamples with replacement, seed 0, the same resampled utterances for base and adapter and for WER, CER and Corr; corpus-level rates per resample; 2.5th and 97.5th percentiles): an interval without 0 is a significant change.

## Summary: decoding `default`

WER / CER in %, n = number of test utterances. A row `<base>_lora_<lang>_<tag>` is the adapter trained on <lang>: its other columns are the cross-language (forgetting) check.

|model|hi|hi Corr|it|it Corr|
|---|---|---|---|---|
|whisper_base|22.0 / 12.0 (n=10)|80.0|10.0 / 4.3 (n=8)|90.0|
|whisper_base_lora_hi_r32_qv_dec|11.0 / 2.4 (n=10)|90.0|-|-|

Corr: words correct, % of reference words recognised (hits / reference words, sclite's Corr); insertions do not lower it, so it stays within 0-100.

## Summary: decoding `default beam_size=5`

WER / CER in %, n = number of test utterances. A row `<base>_lora_<lang>_<tag>` is the adapter trained on <lang>: its other columns are the cross-language (forgetting) check.

|model|hi|hi Corr|
|---|---|---|
|whisper_base|16.0 / 7.0 (n=10)|85.0|

Corr: words correct, % of reference words recognised (hits / reference words, sclite's Corr); insertions do not lower it, so it stays within 0-100.

## whisper_base

### WER

|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
|---|---|---|---|---|---|---|---|---|
|decode_hi_test|10|100|80.0|15.0|5.0|2.0|22.0|60.0|
|decode_hi_test_beam5|10|100|85.0|10.0|5.0|1.0|16.0|50.0|
|decode_it_test|8|50|90.0|8.0|2.0|0.0|10.0|25.0|

Corr: hits / reference words (sclite's Corr); Sub, Del, Ins, Err = Sub + Del + Ins: % of reference words (Err exceeds 100 when insertions dominate); S.Err: % of utterances with an error.

### CER (Wrd counts characters, spaces included)

|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
|---|---|---|---|---|---|---|---|---|
|decode_hi_test|10|500|90.0|6.0|4.0|2.0|12.0|60.0|
|decode_hi_test_beam5|10|500|94.0|4.0|2.0|1.0|7.0|50.0|
|decode_it_test|8|300|96.7|2.0|1.3|1.0|4.3|25.0|

Corr: hits / reference characters (sclite's Corr); Sub, Del, Ins, Err = Sub + Del + Ins: % of reference characters (Err exceeds 100 when insertions dominate); S.Err: % of utterances with an error.

## whisper_base_lora_hi_r32_qv_dec

### WER

|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
|---|---|---|---|---|---|---|---|---|
|decode_hi_test|10|100|90.0|8.0|2.0|1.0|11.0|30.0|

Corr: hits / reference words (sclite's Corr); Sub, Del, Ins, Err = Sub + Del + Ins: % of reference words (Err exceeds 100 when insertions dominate); S.Err: % of utterances with an error.

### CER (Wrd counts characters, spaces included)

|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|
|---|---|---|---|---|---|---|---|---|
|decode_hi_test|10|500|98.0|1.2|0.8|0.4|2.4|30.0|

Corr: hits / reference characters (sclite's Corr); Sub, Del, Ins, Err = Sub + Del + Ins: % of reference characters (Err exceeds 100 when insertions dominate); S.Err: % of utterances with an error.

## Notes

Trained on the synthetic corpus.
"""


def test_render_results_from_fake_exp(tmp_path: Path) -> None:
    _fake_exp(tmp_path / "exp")
    entries = find_entries(tmp_path / "exp")
    assert [(entry.model, entry.decode_dir) for entry in entries] == [
        ("whisper_base", "decode_hi_test"),
        ("whisper_base", "decode_hi_test_beam5"),
        ("whisper_base", "decode_it_test"),
        ("whisper_base_lora_hi_r32_qv_dec", "decode_hi_test"),
    ]
    text = render_results(entries, ENV, ["./run.sh --stage 7"], "## Notes\n\nTrained on the synthetic corpus.\n")
    assert text == EXPECTED_RESULTS


def test_make_results_cli(tmp_path: Path) -> None:
    _fake_exp(tmp_path / "exp")
    out = tmp_path / "RESULTS.md"
    argv = ["--exp_dir", str(tmp_path / "exp"), "--out", str(out), "--command", "./run.sh"]
    assert make_results.main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert "- how to reproduce: `./run.sh`\n" in text
    # Two runs (model families) into one exp dir: both commands.
    assert make_results.main([*argv, "--command", "./run.sh --model_family owsm"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "    - `./run.sh`\n    - `./run.sh --model_family owsm`\n" in text
    assert "|whisper_base|22.0 / 12.0 (n=10)|80.0|10.0 / 4.3 (n=8)|90.0|\n" in text
    for unlisted in ("decode_pa_test", "whisper_base_lora_pa_r32_qv_dec", "te_test", "lora_tmp"):
        assert unlisted not in text


def test_make_results_without_scores_fails_and_keeps_old_file(tmp_path: Path) -> None:
    (tmp_path / "exp" / "model" / "decode_hi_test").mkdir(parents=True)
    out = _write(tmp_path / "RESULTS.md", "old\n")
    assert make_results.main(["--exp_dir", str(tmp_path / "exp"), "--out", str(out)]) == 1
    assert out.read_text(encoding="utf-8") == "old\n"


def test_bad_scores_json_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "exp" / "m" / "decode_hi_test" / "score" / "scores.json", '{"lang": "hi"}')
    with pytest.raises(UserInputError, match=rf"^{path}: missing or invalid 'set'"):
        find_entries(tmp_path / "exp")


def test_decoding_variant_comes_from_stats_json_not_the_dir_name(tmp_path: Path) -> None:
    decode = tmp_path / "decode_hi_test_beam5"  # the name says beam 5; the stats say what ran
    for job in (1, 2):
        write_decode_stats(decode, {"lang_mode": "auto", "temperatures": [0.0, 0.5]}, job=job)
    assert decoding_variant(decode) == "default lang_mode=auto temperatures=0.0,0.5"
    write_decode_stats(tmp_path / "plain", config=None)
    assert decoding_variant(tmp_path / "plain") == "default"
    write_decode_stats(tmp_path / "fast", {"beam_size": 2}, config="fast")
    assert decoding_variant(tmp_path / "fast") == "fast beam_size=2"


def test_decoding_variant_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match=rf"^{tmp_path / 'none'}: no stats.json"):
        decoding_variant(tmp_path / "none")
    write_decode_stats(tmp_path / "mixed", job=1)
    other = write_decode_stats(tmp_path / "mixed", {"beam_size": 5}, job=2)
    with pytest.raises(UserInputError, match=rf"^{other}: decoded as 'default beam_size=5', but .*output.1"):
        decoding_variant(tmp_path / "mixed")
    bad = _write(tmp_path / "bad" / "logdir" / "output.1" / "stats.json", json.dumps({"decode_config": "x"}))
    with pytest.raises(UserInputError, match=rf"^{bad}: no 'options' object"):
        decoding_variant(tmp_path / "bad")


def test_older_decodings_keep_their_dir_name_variant(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """stats.json written before decode_config/options_changed existed: the decode dir's suffix, with a warning."""
    for name, variant in (("decode_hi_test", "default"), ("decode_hi_test_beam5", "beam5"),
                          ("decode_pa_dev_beam2_langauto", "beam2_langauto")):
        _write(tmp_path / name / "logdir" / "output.1" / "stats.json", json.dumps({"options": {"beam_size": 1}}))
        assert decoding_variant(tmp_path / name) == variant
    _write(tmp_path / "decode_hi_test_sp_beam3" / "logdir" / "output.1" / "stats.json", json.dumps({"options": {}}))
    assert decoding_variant(tmp_path / "decode_hi_test_sp_beam3", "hi_test_sp") == "beam3"
    assert "taken from the directory name" in caplog.text


# --- per-source scores and LoRA rank grids ----------------------------------------------


def test_score_by_category(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref", "kb-1-a एक दो\nkb-1-b तीन\ncv-2-a a b c d\n")
    hyp = _write(tmp_path / "hyp", "kb-1-a एक दो\nkb-1-b चार\ncv-2-a a b x d\n")
    cats = _write(tmp_path / "utt2category", "cv-2-a commonvoice\nkb-1-a kathbath\nkb-1-b kathbath\n")
    assert score.main([*_score_args(tmp_path, ref, hyp), "--utt2category", str(cats)]) == 0
    scores = json.loads((tmp_path / "score" / "scores.json").read_text(encoding="utf-8"))
    assert scores["wer"] == pytest.approx(100.0 * 2 / 7)
    assert scores["by_category"]["kathbath"]["num_utts"] == 2
    assert scores["by_category"]["kathbath"]["wer"] == pytest.approx(100.0 / 3)
    assert scores["by_category"]["commonvoice"]["wer"] == pytest.approx(25.0)
    assert scores["by_category"]["kathbath"]["corr"] == pytest.approx(200.0 / 3)
    assert scores["by_category"]["commonvoice"]["corr"] == pytest.approx(75.0)


def test_score_by_category_missing_utterance_names_file(tmp_path: Path) -> None:
    ref = _write(tmp_path / "ref", "u1 a\nu2 b\n")
    hyp = _write(tmp_path / "hyp", "u1 a\nu2 b\n")
    cats = _write(tmp_path / "utt2category", "u1 cv\n")
    args = score.get_parser().parse_args([*_score_args(tmp_path, ref, hyp), "--utt2category", str(cats)])
    with pytest.raises(UserInputError, match=rf"^{cats}: no category for 1 scored utterances, e.g. u2"):
        score.run(args)


def test_results_per_source_and_rank_tables(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    base = _scores("hi", "hi_test", 4, [40, 20, 10, 10, 0], [200, 100, 50, 50, 0], 100.0)
    base["by_category"] = {"commonvoice": {"num_utts": 2, "wer": 60.0, "cer": 55.0, "corr": 45.0},
                           "kathbath": {"num_utts": 2, "wer": 40.0, "cer": 45.0, "corr": 55.0}}
    _write(exp / "whisper_base" / "decode_hi_test" / "score" / "scores.json", json.dumps(base))
    write_decode_stats(exp / "whisper_base" / "decode_hi_test")
    for rank, err in ((8, 12), (32, 8)):
        model = exp / f"whisper_base_lora_hi_r{rank}_qv_dec"
        data = _scores("hi", "hi_test", 4, [40, 40 - err, err, 0, 0], [200, 200 - err, err, 0, 0], 50.0)
        _write(model / "decode_hi_test" / "score" / "scores.json", json.dumps(data))
        write_decode_stats(model / "decode_hi_test")
        _write(model / "adapter" / "adapter_config.json", json.dumps({"r": rank}))
        _write(model / "train_stats.json", json.dumps({"trainable_params": 24576 * rank}))
    text = render_results(find_entries(exp), ENV)
    assert "|model|hi_test: commonvoice|commonvoice Corr|hi_test: kathbath|kathbath Corr|" in text
    assert "|whisper_base|60.0 / 55.0 (n=2)|45.0|40.0 / 45.0 (n=2)|55.0|" in text
    assert "|model|adapter|test set|r=8|r=32|" in text
    assert "|whisper_base|r*_qv_dec|hi_test|30.0 / 6.0 (196,608)|20.0 / 4.0 (786,432)|" in text
