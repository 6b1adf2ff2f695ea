#!/usr/bin/env python3
"""Build a synthetic code-switched test set by concatenating utterances of different languages.

Kinds (``--kind``):
  inter  inter-sentential switching: one utterance of language A, a pause, one
         utterance of language B (A != B), at most ``--max_dur`` seconds in all
  rapid  rapid switching: ``--rapid_segments`` short utterances (at most
         ``--rapid_max_dur`` s each; the shortest ones of a language that has too
         few) alternating between two languages, A B A B, with the same pauses

Sources are formatted test sets (``dump/raw/<lang>_test``: wav.scp, text,
utt2lang, utt2dur), one or more per language; utterances are pooled by their
utt2lang language.  Language pairs cycle through every ordered pair (hi->it,
it->hi, ...) so each direction is equally frequent, and within a language the
least-used utterance is drawn first, so constituents repeat only once a
language's pool is used up.  Everything is drawn from ``--seed``: the same
inputs and seed give the same set, byte for byte.

Why the reference ``text`` is the constituents' transcripts joined by spaces:
the audio is exactly those utterances in that order, separated by digital
silence, so the words spoken are their words in that order and nothing else.
Scoring removes punctuation, so a sentence-final full stop or danda in the
middle is not an error.  And the single-language baseline (the same
constituents decoded one by one, see codeswitch_report) is scored against the
same words, so a WER difference measures the switching alone.

Truth: the pause between two constituents is split in half, so the truth
segments tile the utterance (they sum to its duration, and each holds all of
its constituent's speech); a switch happens at a segment boundary between two
languages, i.e. in the middle of the pause.

Writes 16 kHz 16-bit wav files ``<audio_dir>/<utt>.wav`` and the Kaldi dir
``--out_dir`` (validated, replaced atomically): wav.scp, text, utt2spk and
spk2utt (speaker ``cs-<kind>``, a prefix of every utterance id), utt2lang (the
first constituent's language), utt2dur; then our own files
  segments_truth  ``utt start end lang srcutt``: one line per constituent, in time order
  switches        ``utt t1 t2 ...``: the true switch times (s)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_adapters.codeswitch.compose import KINDS, SetOptions, make_set
from espnet_adapters.utils.cli import make_parser, run_main


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--in_dirs", type=Path, nargs="+", required=True,
                        help="Formatted test sets (wav.scp text utt2lang utt2dur), two or more languages in all.")
    parser.add_argument("--out_dir", type=Path, required=True, help="The Kaldi dir to write.")
    parser.add_argument("--audio_dir", type=Path, required=True, help="Where the wav files go (not inside --out_dir).")
    parser.add_argument("--kind", choices=KINDS, required=True, help="inter-sentential or rapid switching.")
    parser.add_argument("--num_utts", type=int, default=100, help="Code-switched utterances to make.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every random choice.")
    parser.add_argument("--pause", type=float, default=0.3, help="Silence between constituents (s).")
    parser.add_argument("--max_dur", type=float, default=28.0,
                        help="Longest code-switched utterance (s); Whisper's window is 30 s.")
    parser.add_argument("--rapid_segments", type=int, default=4, help="rapid: constituents per utterance.")
    parser.add_argument("--rapid_max_dur", type=float, default=3.0, help="rapid: longest constituent (s).")
    return parser


def run(args: argparse.Namespace) -> None:
    """Compose the set (espnet_adapters.codeswitch.compose)."""
    options = SetOptions(kind=args.kind, num_utts=args.num_utts, seed=args.seed, pause=args.pause,
                         max_dur=args.max_dur, rapid_segments=args.rapid_segments, rapid_max_dur=args.rapid_max_dur)
    make_set(args.in_dirs, args.out_dir, args.audio_dir, options)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.make_codeswitch --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
