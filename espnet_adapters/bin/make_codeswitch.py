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
import functools
import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_data_dir, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.features import SAMPLE_RATE

logger = logging.getLogger(__name__)

KINDS = ("inter", "rapid")
SEGMENTS_TRUTH = "segments_truth"
SWITCHES = "switches"


# --------------------------------------------------------------------------- truth files (shared)


@dataclass(frozen=True)
class TruthSegment:
    """One constituent of a code-switched utterance: where it lies, its language, where it came from."""

    start: float
    end: float
    lang: str
    source: str


def format_time(seconds: float) -> str:
    """Seconds to 0.1 ms: finer than a sample period's effect on any metric here, and awk-safe."""
    return f"{seconds:.4f}"


def write_segment_table(path: Path, rows: Iterable[tuple[str, float, float, str, str]]) -> None:
    """``utt start end lang rest`` lines (several per utterance), sorted by utterance then time, atomically.

    Not a Kaldi map (an utterance has one line per segment), hence not
    :func:`~espnet_adapters.data.kaldi.write_map`; ``rest`` may hold spaces (a hypothesis).
    """
    ordered = sorted(rows, key=lambda row: (row[0], row[1]))
    with atomic_write(path) as handle:
        for utt, start, end, lang, rest in ordered:
            handle.write(f"{utt} {format_time(start)} {format_time(end)} {lang} {rest}".rstrip(" ") + "\n")


def read_segments_truth(path: Path) -> dict[str, list[TruthSegment]]:
    """``segments_truth`` -> utterance -> its constituents in time order; malformed lines name file:line."""
    if not path.is_file():
        raise UserInputError(f"{path}: missing; the data dir was not made by make_codeswitch")
    table: dict[str, list[TruthSegment]] = defaultdict(list)
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        try:
            utt, start, end, lang, source = fields[0], float(fields[1]), float(fields[2]), fields[3], fields[4]
            well_formed = len(fields) == 5 and 0 <= start < end
        except (IndexError, ValueError):
            well_formed = False
        if not well_formed:
            raise UserInputError(f"{path}:{lineno}: expected 'utt start end lang srcutt' with 0 <= start < end")
        previous = table[utt][-1].end if table[utt] else 0.0
        if abs(start - previous) > 1e-3:
            raise UserInputError(f"{path}:{lineno}: {utt}: starts at {start}, the previous segment ends at {previous}")
        table[utt].append(TruthSegment(start, end, lang, source))
    return dict(table)


def read_times(path: Path) -> dict[str, list[float]]:
    """``utt t1 t2 ...`` (``switches``, ``detected``): increasing times; an utterance may have none."""
    times: dict[str, list[float]] = {}
    for utt, (lineno, value) in read_map_lines(path, allow_empty_value=True).items():
        try:
            values = [float(field) for field in value.split()]
        except ValueError as err:
            raise UserInputError(f"{path}:{lineno}: {utt}: expected times in seconds ({err})") from err
        if any(later <= earlier for earlier, later in itertools.pairwise(values)):
            raise UserInputError(f"{path}:{lineno}: {utt}: times must increase")
        times[utt] = values
    return times


def write_times(path: Path, times: Mapping[str, Sequence[float]]) -> None:
    """The inverse of :func:`read_times`."""
    write_map(path, {utt: " ".join(format_time(t) for t in values) for utt, values in times.items()})


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """A test utterance that can become a constituent."""

    utt: str
    lang: str
    dur: float
    text: str
    entry: str  # its wav.scp value
    where: str  # wav.scp:LINE, for messages


def _read_sources(in_dir: Path) -> list[Source]:
    """Every utterance of a formatted dir; utt2lang and utt2dur are required (stage 3 writes both)."""
    for name in ("wav.scp", "text", "utt2lang", "utt2dur"):
        if not (in_dir / name).is_file():
            raise UserInputError(f"{in_dir / name}: missing; --in_dirs are formatted test sets (dump/raw/<lang>_test)")
    wav_scp = read_map_lines(in_dir / "wav.scp")
    text, utt2lang, utt2dur = (read_map(in_dir / name) for name in ("text", "utt2lang", "utt2dur"))
    sources = []
    for utt, (lineno, entry) in wav_scp.items():
        for name, table in (("text", text), ("utt2lang", utt2lang), ("utt2dur", utt2dur)):
            if utt not in table:
                raise UserInputError(f"{in_dir / 'wav.scp'}:{lineno}: {utt} has no line in {in_dir / name}")
        sources.append(Source(utt, utt2lang[utt], float(utt2dur[utt]), text[utt], entry,
                              f"{in_dir / 'wav.scp'}:{lineno}"))
    return sources


def pool_sources(in_dirs: Sequence[Path]) -> dict[str, list[Source]]:
    """Language -> its utterances from every dir, sorted by id; at least two languages."""
    pools: dict[str, list[Source]] = defaultdict(list)
    seen: dict[str, Path] = {}
    for in_dir in in_dirs:
        for source in _read_sources(in_dir):
            if source.utt in seen:
                raise UserInputError(f"{source.where}: utterance {source.utt} is also in {seen[source.utt]}")
            seen[source.utt] = in_dir
            pools[source.lang].append(source)
    if len(pools) < 2:
        raise UserInputError(f"--in_dirs {' '.join(map(str, in_dirs))}: code-switching needs two languages,"
                             f" found {', '.join(pools) or 'none'}")
    return {lang: sorted(pool, key=lambda s: s.utt) for lang, pool in sorted(pools.items())}


def short_pools(pools: Mapping[str, list[Source]], max_dur: float, need: int) -> dict[str, list[Source]]:
    """Each language's utterances of at most ``max_dur`` s; its ``need`` shortest if fewer are that short."""
    short = {}
    for lang, pool in pools.items():
        if len(pool) < need:
            raise UserInputError(f"{pool[0].where}: language {lang} has {len(pool)} utterance(s); rapid needs {need}")
        chosen = [source for source in pool if source.dur <= max_dur]
        if len(chosen) < need:
            chosen = sorted(pool, key=lambda s: (s.dur, s.utt))[:need]
            logger.warning("%s: fewer than %d utterances of at most %.1f s; using the shortest (%.2f-%.2f s)",
                           lang, need, max_dur, chosen[0].dur, chosen[-1].dur)
        short[lang] = chosen
    logger.info("rapid pools: %s", ", ".join(f"{lang} {len(pool)}" for lang, pool in short.items()))
    return short


# --------------------------------------------------------------------------- drawing


@dataclass
class Drawer:
    """Seeded draws: language patterns that cycle through every ordered pair, least-used utterances first."""

    pools: Mapping[str, list[Source]]
    rng: np.random.Generator
    uses: Counter[str]

    @functools.cached_property
    def shortest(self) -> dict[str, float]:
        """Each language's shortest duration: the room a later constituent needs at least."""
        return {lang: min(s.dur for s in pool) for lang, pool in self.pools.items()}

    def pairs(self) -> list[tuple[str, str]]:
        """Every ordered language pair once, in a seeded order."""
        pairs = list(itertools.permutations(self.pools, 2))
        return [pairs[i] for i in self.rng.permutation(len(pairs))]

    def draw(self, pattern: Sequence[str], max_dur: float, pause: float) -> list[Source]:
        """One utterance's constituents, languages as in ``pattern``, in total at most ``max_dur`` s.

        Each pick leaves room for the shortest utterance of every language still
        to come, so a pattern that fits at all is always completed.
        """
        picked: list[Source] = []
        for position, lang in enumerate(pattern):
            budget = max_dur - pause * (len(pattern) - 1) - sum(s.dur for s in picked)
            budget -= sum(self.shortest[later] for later in pattern[position + 1 :])
            fits = [s for s in self.pools[lang] if s.dur <= budget and s not in picked]
            if not fits:
                raise UserInputError(
                    f"{self.pools[lang][0].where}: no {lang} utterance of at most {budget:.2f} s left for"
                    f" {'+'.join(pattern)} within --max_dur {max_dur} s"
                )
            least = min(self.uses[s.utt] for s in fits)
            candidates = [s for s in fits if self.uses[s.utt] == least]
            choice = candidates[int(self.rng.integers(len(candidates)))]
            self.uses[choice.utt] += 1
            picked.append(choice)
        return picked


def patterns(kind: str, pairs: Sequence[tuple[str, str]], num_utts: int, rapid_segments: int) -> list[list[str]]:
    """The language sequence of each utterance: A B for inter, A B A B ... for rapid."""
    length = 2 if kind == "inter" else rapid_segments
    return [[pairs[i % len(pairs)][k % 2] for k in range(length)] for i in range(num_utts)]


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class Composed:
    """A code-switched utterance: its audio and its truth."""

    audio: np.ndarray
    segments: list[TruthSegment]

    @property
    def switches(self) -> list[float]:
        """Boundaries between segments of different languages."""
        return [b.start for a, b in itertools.pairwise(self.segments) if a.lang != b.lang]


def compose(parts: Sequence[tuple[Source, np.ndarray]], pause: float) -> Composed:
    """Concatenate the audio with ``pause`` s of silence between parts; segment boundaries mid-pause."""
    gap = int(round(pause * SAMPLE_RATE))
    pieces: list[np.ndarray] = []
    bounds = [0]
    position = 0
    for index, (_, audio) in enumerate(parts):
        if index:
            pieces.append(np.zeros(gap, dtype=np.float32))
            bounds.append(position + gap // 2)
            position += gap
        pieces.append(audio)
        position += len(audio)
    bounds.append(position)
    segments = [TruthSegment(start / SAMPLE_RATE, end / SAMPLE_RATE, source.lang, source.utt)
                for (source, _), (start, end) in zip(parts, itertools.pairwise(bounds), strict=True)]
    return Composed(np.concatenate(pieces), segments)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16-bit PCM at 16 kHz, atomically (a killed job leaves no truncated wav behind)."""
    with atomic_write(path, "wb") as handle:
        sf.write(handle, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


# --------------------------------------------------------------------------- entry point


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


def _check_options(args: argparse.Namespace) -> None:
    if args.num_utts < 1 or args.pause < 0 or args.rapid_segments < 2:
        raise UserInputError("--num_utts must be >= 1, --pause >= 0 and --rapid_segments >= 2")
    if not 0 < args.max_dur <= 30:
        raise UserInputError(f"--max_dur {args.max_dur}: must be in (0, 30], Whisper's window")
    out, audio = args.out_dir.resolve(), args.audio_dir.resolve()
    if audio == out or out in audio.parents:
        raise UserInputError(f"--audio_dir {args.audio_dir} is inside --out_dir, which is replaced as a whole")


def run(args: argparse.Namespace) -> None:
    """Draw every utterance's constituents, write the audio, then the data dir and the truth."""
    _check_options(args)
    pools = pool_sources(args.in_dirs)
    if args.kind == "rapid":
        pools = short_pools(pools, args.rapid_max_dur, need=(args.rapid_segments + 1) // 2)
    drawer = Drawer(pools, np.random.default_rng(args.seed), Counter())
    speaker = f"cs-{args.kind}"
    files: dict[str, dict[str, str]] = defaultdict(dict)
    truth: dict[str, Composed] = {}
    for index, pattern in enumerate(tqdm(patterns(args.kind, drawer.pairs(), args.num_utts, args.rapid_segments),
                                         desc=f"make {speaker}", mininterval=10)):
        sources = drawer.draw(pattern, args.max_dur, args.pause)
        utt = f"{speaker}-{index:04d}-{pattern[0]}-{pattern[1]}"
        composed = compose([(s, read_audio(s.entry, SAMPLE_RATE, s.where)) for s in sources], args.pause)
        wav = args.audio_dir / f"{utt}.wav"
        write_wav(wav, composed.audio)
        files["wav.scp"][utt] = str(wav)
        files["text"][utt] = " ".join(s.text for s in sources)
        files["utt2spk"][utt] = speaker
        files["utt2lang"][utt] = pattern[0]
        files["utt2dur"][utt] = f"{len(composed.audio) / SAMPLE_RATE:.4f}"
        truth[utt] = composed
    write_data_dir(args.out_dir, wav_scp=files["wav.scp"], text=files["text"], utt2spk=files["utt2spk"],
                   utt2lang=files["utt2lang"], utt2dur=files["utt2dur"])
    write_segment_table(args.out_dir / SEGMENTS_TRUTH, [
        (utt, seg.start, seg.end, seg.lang, seg.source) for utt, composed in truth.items() for seg in composed.segments
    ])
    write_times(args.out_dir / SWITCHES, {utt: composed.switches for utt, composed in truth.items()})
    reused = sum(count > 1 for count in drawer.uses.values())
    logger.info("%s: %d %s utterances from %d constituents (%d used more than once)",
                args.out_dir, len(truth), args.kind, len(drawer.uses), reused)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.make_codeswitch --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
