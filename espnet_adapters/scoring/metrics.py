"""Word and character error rates with jiwer, and sclite-like ``result.txt`` files.

Alignments come from :func:`jiwer.process_words` / :func:`jiwer.process_characters`
(Levenshtein with unit costs, as sclite and Kaldi's ``compute-wer``).  Counts are
kept per utterance so that ``result.txt`` can show every alignment, and summed
for the totals.

Definitions (the same as sclite's and ESPnet's):

- ``ref_len`` is the number of reference tokens; ``Corr``, ``Sub``, ``Del``,
  ``Ins`` and ``Err = Sub + Del + Ins`` are percentages of it.  ``Err`` can
  exceed 100 because of insertions.
- ``S.Err`` is the percentage of utterances with at least one error.
- **Characters are Unicode code points** of the normalised text (after NFC), as
  ESPnet's ``char`` tokenizer and ``jiwer.cer`` count them: a Devanagari
  conjunct such as ``क्ष`` is three characters (``क``, ``्``, ``ष``), so a wrong
  matra or virama costs one character, not a whole akshara.
- **CER counts spaces** (one per word boundary, since normalised text has single
  spaces), like ESPnet, whose char tokenizer turns every space into
  ``<space>``: a split or merged word is a character error too.  Because of
  this, an utterance has a character error exactly when it has a word error,
  and ``S.Err`` is the same for words and characters.
- An **empty reference** adds nothing to ``ref_len``; every hypothesis token is
  an insertion and the utterance counts as an error if the hypothesis is not
  empty.  An **empty hypothesis** makes every reference token a deletion.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TextIO

import jiwer

from espnet_adapters.utils.fileio import atomic_write

SPACE_SYMBOL = "<space>"
GAP_SYMBOL = "***"
# Shown before a combining mark aligned on its own, the Unicode charts'
# convention; without it the mark would render on top of the column separator.
DOTTED_CIRCLE = "\u25cc"

_EVAL_MARK = {"equal": "", "substitute": "S", "delete": "D", "insert": "I"}


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-operation counts of one utterance or of a whole set."""

    ref_len: int = 0
    correct: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def percent(self, count: int) -> float:
        """``count`` as a percentage of the reference length (sclite's denominator)."""
        if self.ref_len == 0:
            raise ValueError("error rate undefined: the reference has no tokens")
        return 100.0 * count / self.ref_len

    @property
    def error_rate(self) -> float:
        """WER or CER in percent."""
        return self.percent(self.errors)

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            self.ref_len + other.ref_len,
            self.correct + other.correct,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
        )

    def as_json(self) -> dict[str, int]:
        """The ``word_counts``/``char_counts`` object of ``scores.json``."""
        return {
            "ref": self.ref_len,
            "cor": self.correct,
            "sub": self.substitutions,
            "del": self.deletions,
            "ins": self.insertions,
        }


@dataclass(frozen=True)
class AlignedPair:
    """One column of an alignment; ``None`` on the side of a gap."""

    op: str  # "equal", "substitute", "delete" or "insert" (jiwer's chunk types)
    ref: str | None
    hyp: str | None


@dataclass(frozen=True)
class UttScore:
    """Alignment and counts of one utterance."""

    utt_id: str
    pairs: tuple[AlignedPair, ...]
    counts: ErrorCounts


@dataclass(frozen=True)
class ScoreReport:
    """Per-utterance alignments and totals at one unit (``"word"`` or ``"char"``)."""

    unit: str
    utts: tuple[UttScore, ...]

    @property
    def total(self) -> ErrorCounts:
        return sum((utt.counts for utt in self.utts), ErrorCounts())

    @property
    def num_error_utts(self) -> int:
        return sum(1 for utt in self.utts if utt.counts.errors > 0)

    @property
    def sentence_error_rate(self) -> float:
        """Percentage of utterances with at least one error (sclite's ``S.Err``)."""
        return 100.0 * self.num_error_utts / len(self.utts)


def _pairs_of(
    chunks: Iterable[jiwer.AlignmentChunk], ref: Sequence[str], hyp: Sequence[str]
) -> tuple[AlignedPair, ...]:
    """Expand jiwer's alignment chunks into one column per token."""
    pairs: list[AlignedPair] = []
    for chunk in chunks:
        refs = ref[chunk.ref_start_idx : chunk.ref_end_idx]
        hyps = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "delete":
            pairs.extend(AlignedPair(chunk.type, token, None) for token in refs)
        elif chunk.type == "insert":
            pairs.extend(AlignedPair(chunk.type, None, token) for token in hyps)
        else:  # "equal" and "substitute" chunks have as many ref as hyp tokens
            pairs.extend(AlignedPair(chunk.type, r, h) for r, h in zip(refs, hyps, strict=True))
    return tuple(pairs)


def _counts_of(pairs: Sequence[AlignedPair], ref_len: int) -> ErrorCounts:
    ops = [pair.op for pair in pairs]
    return ErrorCounts(
        ref_len=ref_len,
        correct=ops.count("equal"),
        substitutions=ops.count("substitute"),
        deletions=ops.count("delete"),
        insertions=ops.count("insert"),
    )


def _score(
    unit: str,
    process: Callable[[list[str], list[str]], jiwer.WordOutput | jiwer.CharacterOutput],
    utt_ids: Sequence[str],
    refs: Sequence[str],
    hyps: Sequence[str],
) -> ScoreReport:
    if not (len(utt_ids) == len(refs) == len(hyps)) or not utt_ids:
        raise ValueError("need the same, non-zero number of ids, references and hypotheses")
    output = process(list(refs), list(hyps))
    utts = []
    for utt_id, chunks, ref, hyp in zip(
        utt_ids, output.alignments, output.references, output.hypotheses, strict=True
    ):
        pairs = _pairs_of(chunks, ref, hyp)
        utts.append(UttScore(utt_id, pairs, _counts_of(pairs, len(ref))))
    return ScoreReport(unit, tuple(utts))


def score_words(utt_ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> ScoreReport:
    """Word alignments of normalised references and hypotheses (split on spaces)."""
    return _score("word", jiwer.process_words, utt_ids, refs, hyps)


def score_chars(utt_ids: Sequence[str], refs: Sequence[str], hyps: Sequence[str]) -> ScoreReport:
    """Character (code point) alignments, spaces included; see the module docstring."""
    return _score("char", jiwer.process_characters, utt_ids, refs, hyps)


def display_width(text: str) -> int:
    """Approximate terminal width: combining marks and format characters take no
    column, East Asian wide characters two.  Used to line up REF/HYP/Eval."""
    width = 0
    for char in text:
        if unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _shown(token: str | None, is_error: bool) -> str:
    """How a token appears in result.txt: gaps as ``***``, errors upper-cased
    (a no-op for scripts without case), spaces and lone marks made visible."""
    if token is None:
        return GAP_SYMBOL
    if token == " ":
        return SPACE_SYMBOL
    if unicodedata.category(token[0]).startswith("M"):
        token = DOTTED_CIRCLE + token
    return token.upper() if is_error else token


def alignment_lines(utt: UttScore) -> list[str]:
    """The ``REF:``/``HYP:``/``Eval:`` lines of one utterance, columns aligned."""
    ref_cells, hyp_cells, eval_cells = [], [], []
    for pair in utt.pairs:
        is_error = pair.op != "equal"
        ref, hyp, mark = _shown(pair.ref, is_error), _shown(pair.hyp, is_error), _EVAL_MARK[pair.op]
        width = max(display_width(ref), display_width(hyp))
        ref_cells.append(ref + " " * (width - display_width(ref)))
        hyp_cells.append(hyp + " " * (width - display_width(hyp)))
        eval_cells.append(mark + " " * (width - len(mark)))
    return [
        f"REF:  {' '.join(ref_cells)}".rstrip(),
        f"HYP:  {' '.join(hyp_cells)}".rstrip(),
        f"Eval: {' '.join(eval_cells)}".rstrip(),
    ]


def _write_utterance(out: TextIO, utt: UttScore) -> None:
    counts = utt.counts
    out.write(f"id: ({utt.utt_id})\n")
    out.write(
        f"Scores: (#C #S #D #I) {counts.correct} {counts.substitutions} "
        f"{counts.deletions} {counts.insertions}\n"
    )
    for line in alignment_lines(utt):
        out.write(line + "\n")
    out.write("\n")


def summary_lines(report: ScoreReport, title: str) -> list[str]:
    """sclite's ``Sum/Avg`` table (``grep -e Avg -e SPKR`` finds it, as in ESPnet)
    followed by a Kaldi-style ``%WER``/``%CER`` line with the raw counts."""
    total = report.total
    unit_label = "# Wrd" if report.unit == "word" else "# Chr"
    rate_label = "%WER" if report.unit == "word" else "%CER"
    percents = [
        total.percent(total.correct),
        total.percent(total.substitutions),
        total.percent(total.deletions),
        total.percent(total.insertions),
        total.error_rate,
        report.sentence_error_rate,
    ]
    header = f"| SPKR    | # Snt {unit_label:>7} |  Corr    Sub    Del    Ins    Err  S.Err |"
    row = f"| Sum/Avg | {len(report.utts):5d} {total.ref_len:7d} |" + "".join(
        f" {value:6.1f}" for value in percents
    ) + " |"
    rule = "|" + "-" * (len(header) - 2) + "|"
    return [
        "," + "-" * (len(header) - 2) + ".",
        "|" + title.center(len(header) - 2) + "|",
        rule,
        header,
        rule,
        row,
        "`" + "-" * (len(header) - 2) + "'",
        "",
        f"{rate_label} {total.error_rate:.2f} [ {total.errors} / {total.ref_len}, "
        f"{total.insertions} ins, {total.deletions} del, {total.substitutions} sub ]",
        f"%SER {report.sentence_error_rate:.2f} [ {report.num_error_utts} / {len(report.utts)} ]",
    ]


def write_result_txt(path: str | os.PathLike[str], report: ScoreReport, title: str) -> None:
    """Write every utterance's alignment, then the summary block, atomically.

    ``title`` names the system in the summary box (sclite prints the hyp file there).
    """
    with atomic_write(path) as out:
        for utt in report.utts:
            _write_utterance(out, utt)
        for line in summary_lines(report, title):
            out.write(line + "\n")
