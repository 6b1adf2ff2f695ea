"""Composing a synthetic code-switched test set from single-language test utterances.

Kinds:
  inter  inter-sentential switching: one utterance of language A, a pause, one
         utterance of language B (A != B), at most ``max_dur`` seconds in all
  rapid  rapid switching: ``rapid_segments`` short utterances (at most
         ``rapid_max_dur`` s each; the shortest ones of a language that has too
         few) alternating between two languages, A B A B, with the same pauses

Sources are formatted test sets (wav.scp, text, utt2lang, utt2dur); utterances
are pooled by their utt2lang language.  Language pairs cycle through every
ordered pair so each direction is equally frequent, and within a language the
least-used utterance is drawn first, so constituents repeat only once a
language's pool is used up.  Everything is drawn from the seed: the same inputs
and seed give the same set, byte for byte.

The reference text is the constituents' transcripts joined by spaces (the audio
is exactly those utterances in that order, separated by digital silence); the
truth files are :mod:`espnet_adapters.codeswitch.truth`'s.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet_adapters.codeswitch.truth import SEGMENTS_TRUTH, SWITCHES, TruthSegment, write_segment_table, write_times
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_data_dir
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.features import SAMPLE_RATE

logger = logging.getLogger(__name__)

KINDS = ("inter", "rapid")


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


def read_sources(in_dir: Path) -> list[Source]:
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
        for source in read_sources(in_dir):
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


# --------------------------------------------------------------------------- a whole set


@dataclass(frozen=True)
class SetOptions:
    """How a code-switched set is drawn (make_codeswitch's options of the same names)."""

    kind: str
    num_utts: int
    seed: int
    pause: float  # silence between constituents (s)
    max_dur: float  # longest code-switched utterance (s)
    rapid_segments: int  # rapid: constituents per utterance
    rapid_max_dur: float  # rapid: longest constituent (s)

    def check(self, out_dir: Path, audio_dir: Path) -> None:
        """Values in range; the audio outside the data dir, which is replaced as a whole."""
        if self.kind not in KINDS:
            raise UserInputError(f"--kind {self.kind}: must be one of {', '.join(KINDS)}")
        if self.num_utts < 1 or self.pause < 0 or self.rapid_segments < 2:
            raise UserInputError("--num_utts must be >= 1, --pause >= 0 and --rapid_segments >= 2")
        if not 0 < self.max_dur <= 30:
            raise UserInputError(f"--max_dur {self.max_dur}: must be in (0, 30], Whisper's window")
        out, audio = out_dir.resolve(), audio_dir.resolve()
        if audio == out or out in audio.parents:
            raise UserInputError(f"--audio_dir {audio_dir} is inside --out_dir, which is replaced as a whole")


def make_set(in_dirs: Sequence[Path], out_dir: Path, audio_dir: Path, options: SetOptions) -> None:
    """Draw every utterance's constituents, write the audio, then the data dir and the truth.

    Writes 16 kHz 16-bit ``<audio_dir>/<utt>.wav`` and the Kaldi dir ``out_dir``
    (validated, replaced atomically) with ``segments_truth`` and ``switches``.
    """
    options.check(out_dir, audio_dir)
    pools = pool_sources(in_dirs)
    if options.kind == "rapid":
        pools = short_pools(pools, options.rapid_max_dur, need=(options.rapid_segments + 1) // 2)
    drawer = Drawer(pools, np.random.default_rng(options.seed), Counter())
    speaker = f"cs-{options.kind}"
    files: dict[str, dict[str, str]] = defaultdict(dict)
    truth: dict[str, Composed] = {}
    for index, pattern in enumerate(tqdm(patterns(options.kind, drawer.pairs(), options.num_utts,
                                                  options.rapid_segments),
                                         desc=f"make {speaker}", mininterval=10)):
        sources = drawer.draw(pattern, options.max_dur, options.pause)
        utt = f"{speaker}-{index:04d}-{pattern[0]}-{pattern[1]}"
        composed = compose([(s, read_audio(s.entry, SAMPLE_RATE, s.where)) for s in sources], options.pause)
        wav = audio_dir / f"{utt}.wav"
        write_wav(wav, composed.audio)
        files["wav.scp"][utt] = str(wav)
        files["text"][utt] = " ".join(s.text for s in sources)
        files["utt2spk"][utt] = speaker
        files["utt2lang"][utt] = pattern[0]
        files["utt2dur"][utt] = f"{len(composed.audio) / SAMPLE_RATE:.4f}"
        truth[utt] = composed
    write_data_dir(out_dir, wav_scp=files["wav.scp"], text=files["text"], utt2spk=files["utt2spk"],
                   utt2lang=files["utt2lang"], utt2dur=files["utt2dur"])
    write_segment_table(out_dir / SEGMENTS_TRUTH, [
        (utt, seg.start, seg.end, seg.lang, seg.source) for utt, composed in truth.items() for seg in composed.segments
    ])
    write_times(out_dir / SWITCHES, {utt: composed.switches for utt, composed in truth.items()})
    reused = sum(count > 1 for count in drawer.uses.values())
    logger.info("%s: %d %s utterances from %d constituents (%d used more than once)",
                out_dir, len(truth), options.kind, len(drawer.uses), reused)
