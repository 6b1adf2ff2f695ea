"""The embedded default corpus: real sentences spoken by espeak-ng.

No speech corpus can be downloaded here, but espeak-ng (a Debian package) speaks
Hindi, Italian, Punjabi, Telugu and many more languages.  Its speech is robotic,
yet it is real audio of real sentences with a known transcript, which is enough
to exercise every stage of the recipe and to measure whether an adapter learns a
language's acoustics and orthography.

Speakers are espeak-ng voice variants with their own pitch and rate
(``conf/synth.yaml``).  Every speaker belongs to one split and the sentences are
partitioned before they are assigned, so train, dev and test share neither a
speaker nor a sentence: test WER measures generalisation, not memorisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf
import yaml
from tqdm import tqdm

from espnet_adapters.scoring.normalize import normalize_text
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# Silence (with the background noise) around each sentence, as in a real recording.
PAD_SECONDS = 0.25


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng variant with its own pitch and rate."""

    name: str
    variant: str
    pitch: int
    rate: int
    gender: str
    split: str


@dataclass(frozen=True)
class SynthConfig:
    """Voices per language, the speakers and the noise level (``conf/synth.yaml``)."""

    voices: Mapping[str, str]
    speakers: Sequence[Speaker]
    noise_dbfs: float


@dataclass(frozen=True)
class Utterance:
    """A sentence assigned to a speaker, and where its audio goes."""

    utt_id: str
    spk_id: str
    speaker: Speaker
    text: str
    wav_path: Path


def load_synth_config(path: str | os.PathLike[str]) -> SynthConfig:
    """Read and check ``conf/synth.yaml``; errors name the file and the field."""
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    try:
        speakers = [Speaker(**entry) for entry in raw["speakers"]]
        config = SynthConfig(dict(raw["voices"]), speakers, float(raw["noise_dbfs"]))
    except (KeyError, TypeError, ValueError) as err:
        raise UserInputError(f"{path}: malformed synth config ({err})") from err
    for speaker in speakers:
        if speaker.split not in SPLITS:
            raise UserInputError(f"{path}: speaker {speaker.name}: split must be one of {SPLITS}")
        if speaker.gender not in ("m", "f"):
            raise UserInputError(f"{path}: speaker {speaker.name}: gender must be m or f")
    names = [speaker.name for speaker in speakers]
    if len(set(names)) != len(names):
        raise UserInputError(f"{path}: speaker names must be unique")
    return config


def read_sentences(path: str | os.PathLike[str]) -> list[str]:
    """One sentence per line, NFC; a blank line or a control character is an error."""
    sentences = []
    with open(path, encoding="utf-8", newline="") as handle:
        for lineno, line in enumerate(handle, start=1):
            sentence = line.rstrip("\n")
            if not sentence.strip():
                raise UserInputError(f"{path}:{lineno}: empty sentence")
            if any(unicodedata.category(ch) == "Cc" for ch in sentence):
                raise UserInputError(f"{path}:{lineno}: control character (CR or tab?) in sentence")
            sentences.append(unicodedata.normalize("NFC", " ".join(sentence.split())))
    return sentences


def unique_sentences(lang: str, sentences: Sequence[str]) -> list[int]:
    """Indices of the sentences to use: the first of each group equal after scoring normalisation.

    Two lines that score as the same sentence ("Hello, world." and "hello world")
    must not land in two splits: test would then hold a training sentence.
    """
    seen: set[str] = set()
    kept = []
    for index, sentence in enumerate(sentences):
        key = normalize_text(sentence, lang)
        if key and key not in seen:
            seen.add(key)
            kept.append(index)
    if len(kept) < len(sentences):
        logger.info("%s: %d of %d sentences are duplicates after normalisation (or empty): left out",
                    lang, len(sentences) - len(kept), len(sentences))
    return kept


def audio_key(text: str, voice: str, speaker: Speaker, noise_dbfs: float) -> str:
    """A digest of everything the audio of one utterance depends on (part of its file name).

    An edited sentence file or synth config then gives new file names instead of
    silently pairing the old audio with the new text.
    """
    what = json.dumps([text, voice, speaker.variant, speaker.pitch, speaker.rate, noise_dbfs, PAD_SECONDS])
    return hashlib.sha1(what.encode("utf-8")).hexdigest()[:10]


def plan_corpus(
    lang: str,
    sentences: Sequence[str],
    speakers: Sequence[Speaker],
    sizes: Mapping[str, int],
    audio_dir: Path,
    seed: int,
    *,
    voice: str,
    noise_dbfs: float,
) -> dict[str, list[Utterance]]:
    """Partition sentences across splits and assign them round-robin to the split's speakers.

    Sentences equal after normalisation count once (``unique_sentences``).  The
    sentence index in the file is part of the utterance id, so ids stay stable
    when sizes change; the audio file name adds ``audio_key`` (text, voice,
    speaker, noise), so cached audio is reused exactly when it is still right.
    """
    usable = unique_sentences(lang, sentences)
    needed = sum(sizes.values())
    if needed > len(usable):
        raise UserInputError(
            f"{lang}: {needed} sentences requested ({dict(sizes)}) but only {len(usable)} distinct ones available"
        )
    order = list(usable)
    random.Random(f"{seed}-{lang}").shuffle(order)
    plan: dict[str, list[Utterance]] = {}
    start = 0
    for split in ("test", "dev", "train"):  # test first: its sentences never depend on train size
        split_speakers = [speaker for speaker in speakers if speaker.split == split]
        if not split_speakers:
            raise UserInputError(f"no speaker assigned to split {split!r} in the synth config")
        indices = order[start : start + sizes[split]]
        start += sizes[split]
        utts = []
        for rank, index in enumerate(sorted(indices)):
            speaker = split_speakers[rank % len(split_speakers)]
            spk_id = f"{lang}_{speaker.name}"
            utt_id = f"{spk_id}-{lang}{index:05d}"
            text = sentences[index]
            wav = audio_dir / spk_id / f"{utt_id}-{audio_key(text, voice, speaker, noise_dbfs)}.wav"
            utts.append(Utterance(utt_id, spk_id, speaker, text, wav))
        plan[split] = utts
    return plan


def synthesize(utt: Utterance, voice: str, noise_dbfs: float) -> float:
    """Speak one utterance to its wav path (atomically) and return its duration in seconds.

    An existing file is reused: its name carries ``audio_key`` of everything it was
    made from, espeak-ng is deterministic and the noise is seeded by the utterance id.
    """
    if utt.wav_path.exists():
        return sf.info(str(utt.wav_path)).duration
    utt.wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        cmd = [
            "espeak-ng", "-v", f"{voice}+{utt.speaker.variant}", "-p", str(utt.speaker.pitch),
            "-s", str(utt.speaker.rate), "-w", str(raw), "--stdin",
        ]
        result = subprocess.run(cmd, input=utt.text.encode("utf-8"), capture_output=True, check=False)
        if result.returncode != 0 or not raw.exists():
            raise UserInputError(
                f"espeak-ng failed for {utt.utt_id} ({' '.join(cmd)}): {result.stderr.decode(errors='replace')}"
            )
        audio, rate = sf.read(str(raw), dtype="float32")
    if audio.size == 0:
        raise UserInputError(f"espeak-ng produced no audio for {utt.utt_id}: {utt.text!r}")
    pad = np.zeros(int(PAD_SECONDS * rate), dtype=np.float32)
    audio = np.concatenate([pad, audio, pad])
    rng = np.random.default_rng(zlib.crc32(utt.utt_id.encode("utf-8")))
    audio = audio + rng.normal(0.0, 10.0 ** (noise_dbfs / 20.0), audio.shape).astype(np.float32)
    fd, tmp_path = tempfile.mkstemp(suffix=".wav", dir=utt.wav_path.parent)
    os.close(fd)
    sf.write(tmp_path, np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")
    os.replace(tmp_path, utt.wav_path)
    return len(audio) / rate


def synthesize_all(utts: Sequence[Utterance], voice: str, noise_dbfs: float, nj: int) -> dict[str, float]:
    """Synthesize utterances with ``nj`` espeak-ng processes; returns utt -> duration."""
    if shutil.which("espeak-ng") is None:
        raise UserInputError("espeak-ng not found: run tools/install.sh (Debian package espeak-ng)")
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        futures = [pool.submit(synthesize, utt, voice, noise_dbfs) for utt in utts]
        durations = {
            utt.utt_id: future.result()
            for utt, future in tqdm(zip(utts, futures), total=len(utts), desc=f"espeak-ng {voice}", mininterval=5)
        }
    return durations
