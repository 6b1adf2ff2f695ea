#!/usr/bin/env python3
"""Score a decoding: WER and CER of a hypothesis text against a reference text.

Both Kaldi ``text`` files (``utt-id transcript`` per line) are normalised with
the same function, ``espnet_adapters.scoring.normalize.normalize_text``: Unicode
NFC, format characters (ZWJ/ZWNJ) deleted, punctuation and symbols (including
the danda) replaced by spaces, case folded, whitespace collapsed.  Letters and
combining marks (virama, matras, nukta) are kept, unlike Whisper's
BasicTextNormalizer, which deletes them.

Outputs in --out_dir, each written atomically, scores.json last (its presence
means the others are complete):

  ref.norm, hyp.norm  normalised texts (Kaldi text files, sorted)
  result.txt          sclite-like word alignment of every utterance + summary
  result.cer.txt      the same with characters (spaces shown as <space>)
  per_utt.tsv         one line per utterance (reference order), tab-separated, with
                      a header: utt_id, then for words and for characters the
                      reference length, hits, sub, del, ins and errors (the input
                      of make_results' paired bootstrap confidence intervals)
  scores.json         {lang, set, num_utts, num_missing_hyps, num_empty_refs,
                       wer, cer, corr, word_counts, char_counts,
                       sentence_error_rate, normalizer, char_unit, per_utt
                       [, by_category]}

corr is sclite's Corr for words: the percentage of reference words recognised
(hits / reference words); unlike WER it is not inflated by insertions and stays
within 0-100, so it still compares two systems whose WERs both exceed 100%.

With --utt2category (a Kaldi file naming each utterance's source corpus, as a
pooled multi-corpus test set has), scores.json also holds
``by_category: {source: {num_utts, wer, cer, corr}}``, so one decoding of the pooled
set reports in-domain and cross-domain WER side by side.

Rules: characters are Unicode code points and CER counts spaces, like ESPnet.
An utterance without hypothesis is scored as an empty hypothesis (all
deletions) and counted in num_missing_hyps; a hypothesis id that is not in the
reference is an error (named by hyp file and line).  A reference that is empty
after normalisation adds no words to the denominator; its hypothesis words are
insertions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi import read_map, write_map
from espnet_adapters.scoring.metrics import ScoreReport, score_chars, score_words, write_result_txt
from espnet_adapters.scoring.normalize import NORMALIZER_VERSION, normalize_text
from espnet_adapters.scoring.per_utt import PER_UTT_FILE, write_per_utt
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

CHAR_UNIT = "unicode code point (NFC), spaces included"


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--ref_text", type=Path, required=True, help="Reference Kaldi text (data/hi_test/text).")
    parser.add_argument("--hyp_text", type=Path, required=True, help="Hypothesis Kaldi text of the decoding.")
    parser.add_argument("--lang", required=True, help="ISO 639-1 code of the test set's language (hi, pa, te, it).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Directory for the outputs listed above.")
    parser.add_argument(
        "--utt2category",
        type=Path,
        default=None,
        help="Kaldi utt2category of the test set: also score each source (category) on its own.",
    )
    parser.add_argument(
        "--set_name",
        default=None,
        help="Test set name recorded in scores.json; None: the name of --ref_text's directory.",
    )
    return parser


def _check_hyp_ids(refs: dict[str, str], hyps: dict[str, str], hyp_path: Path) -> None:
    """A hypothesis for an utterance outside the reference means mixed-up files.

    ``read_map`` keeps file order and rejects empty lines and duplicate keys, so
    the n-th key of ``hyps`` is on line n of the file.
    """
    extra = [(lineno, utt) for lineno, utt in enumerate(hyps, start=1) if utt not in refs]
    if extra:
        lineno, utt = extra[0]
        more = f" ({len(extra) - 1} more such ids)" if len(extra) > 1 else ""
        raise UserInputError(f"{hyp_path}:{lineno}: utterance {utt} is not in the reference{more}")


def _scores_json(
    args: argparse.Namespace, words: ScoreReport, chars: ScoreReport, num_missing: int, num_empty_refs: int
) -> dict[str, object]:
    return {
        "lang": args.lang,
        "set": args.set_name or args.ref_text.resolve().parent.name,
        "num_utts": len(words.utts),
        "num_missing_hyps": num_missing,
        "num_empty_refs": num_empty_refs,
        "wer": words.total.error_rate,
        "cer": chars.total.error_rate,
        "corr": words.total.percent(words.total.correct),
        "word_counts": words.total.as_json(),
        "char_counts": chars.total.as_json(),
        "sentence_error_rate": words.sentence_error_rate,
        "normalizer": NORMALIZER_VERSION,
        "char_unit": CHAR_UNIT,
        "per_utt": PER_UTT_FILE,
    }


def _by_category(
    path: Path, utt_ids: list[str], ref_norm: list[str], hyp_norm: list[str]
) -> dict[str, dict[str, float | int]]:
    """WER/CER of each category's utterances (every scored utterance needs a category)."""
    categories = read_map(path)
    missing = [utt for utt in utt_ids if utt not in categories]
    if missing:
        raise UserInputError(f"{path}: no category for {len(missing)} scored utterances, e.g. {missing[0]}")
    result: dict[str, dict[str, float | int]] = {}
    for category in sorted(set(categories[utt] for utt in utt_ids)):
        index = [i for i, utt in enumerate(utt_ids) if categories[utt] == category]
        ids = [utt_ids[i] for i in index]
        refs, hyps = [ref_norm[i] for i in index], [hyp_norm[i] for i in index]
        words = score_words(ids, refs, hyps)
        if words.total.ref_len == 0:
            logger.warning("%s: category %s has no reference words; not scored on its own", path, category)
            continue
        result[category] = {
            "num_utts": len(ids),
            "wer": words.total.error_rate,
            "cer": score_chars(ids, refs, hyps).total.error_rate,
            "corr": words.total.percent(words.total.correct),
        }
    return result


def run(args: argparse.Namespace) -> None:
    """Normalise, align, and write the outputs."""
    # Empty transcripts are allowed on both sides: a decoder may output nothing,
    # and an empty reference is scored as documented above.
    refs = read_map(args.ref_text, allow_empty_value=True)
    hyps = read_map(args.hyp_text, allow_empty_value=True)
    if not refs:
        raise UserInputError(f"{args.ref_text}: no utterances")
    _check_hyp_ids(refs, hyps, args.hyp_text)
    utt_ids = list(refs)
    missing = [utt for utt in utt_ids if utt not in hyps]
    if missing:
        logger.warning(
            "%d of %d utterances have no hypothesis in %s (scored as empty), e.g. %s",
            len(missing), len(utt_ids), args.hyp_text, ", ".join(missing[:5]),
        )
    ref_norm = [normalize_text(refs[utt], args.lang) for utt in utt_ids]
    hyp_norm = [normalize_text(hyps[utt], args.lang) if utt in hyps else "" for utt in utt_ids]
    num_empty_refs = ref_norm.count("")
    if num_empty_refs:
        logger.warning(
            "%d references are empty after normalisation: their hypothesis words count as insertions",
            num_empty_refs,
        )
    words = score_words(utt_ids, ref_norm, hyp_norm)
    if words.total.ref_len == 0:
        raise UserInputError(
            f"{args.ref_text}: every reference is empty after normalisation; WER is undefined"
        )
    chars = score_chars(utt_ids, ref_norm, hyp_norm)

    out_dir: Path = args.out_dir
    # scores.json vouches for the other outputs: never leave an old one beside new ones.
    (out_dir / "scores.json").unlink(missing_ok=True)
    write_map(out_dir / "ref.norm", dict(zip(utt_ids, ref_norm, strict=True)))
    write_map(out_dir / "hyp.norm", dict(zip(utt_ids, hyp_norm, strict=True)))
    write_result_txt(out_dir / "result.txt", words, title=str(args.hyp_text))
    write_result_txt(out_dir / "result.cer.txt", chars, title=str(args.hyp_text))
    write_per_utt(out_dir / PER_UTT_FILE, words, chars)
    scores = _scores_json(args, words, chars, len(missing), num_empty_refs)
    if args.utt2category is not None:
        scores["by_category"] = _by_category(args.utt2category, utt_ids, ref_norm, hyp_norm)
    with atomic_write(out_dir / "scores.json") as out:
        json.dump(scores, out, ensure_ascii=False, indent=2)
        out.write("\n")
    logger.info(
        "%s: WER %.2f%% CER %.2f%% Corr %.2f%% on %d utterances (%d without hypothesis) -> %s",
        scores["set"], scores["wer"], scores["cer"], scores["corr"], len(utt_ids), len(missing), out_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.score --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
