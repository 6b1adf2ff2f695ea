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

``dev_other`` / ``test_other`` (``plan_other``): the dev / test sentences spoken by another
synthesizer, Festival's diphone voices (``conf/synth_other.yaml``): whether an adapter learnt
the language or espeak-ng.
"""

from __future__ import annotations

import codecs
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
from tqdm import tqdm

from espnet_adapters.scoring.normalize import normalize_text
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.config import read_yaml

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
# <split>_other: the sentences of <split> spoken by another synthesizer (conf/synth_other.yaml).
OTHER_SPLITS = ("dev_other", "test_other")
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
class OtherSpeaker:
    """A speaker of the other synthesizer (Festival): a diphone voice with its own pitch and tempo."""

    name: str
    voice: str  # Festival's voice_<voice>, e.g. hindi_NSK_diphone
    f0_mean: float  # Hz
    stretch: float  # duration factor (> 1: slower)
    gender: str
    transliterate: tuple[str, ...]  # text conversions, e.g. gurmukhi_to_devanagari: the voice reads another script
    encoding: str = "utf-8"  # what the voice reads (the Italian voices: latin-1)
    own_intonation: bool = False  # the voice's intonation model (f0_mean unused), not a flat one at f0_mean


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
    speaker: Speaker | OtherSpeaker
    text: str
    wav_path: Path


def load_synth_config(path: str | os.PathLike[str]) -> SynthConfig:
    """Read and check ``conf/synth.yaml``; errors name the file and the field."""
    raw = read_yaml(path)
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


def _intonation(value: object) -> bool:
    """``intonation: own`` (True) or ``flat`` (False) of a voice in ``conf/synth_other.yaml``."""
    if value not in ("own", "flat"):
        raise ValueError(f"intonation: own or flat, got {value!r}")
    return value == "own"


def other_languages(path: str | os.PathLike[str]) -> list[str]:
    """The languages the other synthesizer speaks (``conf/synth_other.yaml``), each language's
    speakers loaded (and so checked) by :func:`load_other_config`.  Errors name the file."""
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("voices"), dict):
        raise UserInputError(f"{path}: expected a mapping with `voices` (language: voices) and `speakers`")
    for lang in raw["voices"]:
        load_other_config(path, str(lang))
    return [str(lang) for lang in raw["voices"]]


def load_other_config(path: str | os.PathLike[str], lang: str) -> list[OtherSpeaker]:
    """The other synthesizer's speakers of ``lang`` (``conf/synth_other.yaml``): each prosody
    entry of ``speakers`` with the language's voices in turn.  Errors name the file and field."""
    raw = read_yaml(path)
    try:
        voices = raw["voices"]
        prosody = raw["speakers"]
        scripts = raw.get("transliterate") or {}
        if lang not in voices:
            raise UserInputError(
                f"{path}: no voice of the other synthesizer for language {lang!r} under `voices` "
                f"(it has {' '.join(sorted(voices))}): leave <split>_other out of --test_sets for it"
            )
        lang_voices = voices[lang]
        speakers = []
        for i, entry in enumerate(prosody):
            voice = lang_voices[i % len(lang_voices)]
            speakers.append(OtherSpeaker(
                str(entry["name"]), str(voice["voice"]), float(entry["f0_mean"]), float(entry["stretch"]),
                str(voice["gender"]), tuple(scripts.get(lang) or ()), str(voice.get("encoding", "utf-8")),
                _intonation(voice.get("intonation", "flat")),
            ))
            codecs.lookup(speakers[-1].encoding)  # an unknown encoding is a LookupError
    except (KeyError, TypeError, ValueError, ZeroDivisionError, LookupError) as err:
        raise UserInputError(f"{path}: malformed config of the other synthesizer ({err!r})") from err
    for speaker in speakers:
        if speaker.gender not in ("m", "f"):
            raise UserInputError(f"{path}: voice {speaker.voice}: gender must be m or f")
        if not 40 <= speaker.f0_mean <= 400 or not 0.3 <= speaker.stretch <= 3.0:
            raise UserInputError(f"{path}: speaker {speaker.name}: f0_mean (40-400 Hz) or stretch (0.3-3) out of range")
        for name in speaker.transliterate:
            if name not in TRANSLITERATIONS:
                raise UserInputError(f"{path}: unknown transliteration {name!r} (known: {' '.join(TRANSLITERATIONS)})")
    if not speakers or len({speaker.name for speaker in speakers}) != len(speakers):
        raise UserInputError(f"{path}: `speakers` must list at least one speaker, names unique")
    return speakers


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


def audio_key(text: str, voice: str, speaker: Speaker | OtherSpeaker, noise_dbfs: float) -> str:
    """A digest of everything the audio of one utterance depends on (part of its file name).

    An edited sentence file or synth config then gives new file names instead of
    silently pairing the old audio with the new text.
    """
    if isinstance(speaker, OtherSpeaker):
        what = json.dumps(["festival", festival_script(speaker, spoken_text(speaker, text)), speaker.encoding,
                           noise_dbfs, PAD_SECONDS])
    else:
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


def plan_other(
    lang: str, utts: Sequence[Utterance], speakers: Sequence[OtherSpeaker], audio_dir: Path, noise_dbfs: float
) -> list[Utterance]:
    """The sentences of a planned split (``utts``), spoken by the other synthesizer's speakers
    in turn: the same sentence ids, new speaker ids (``<lang>_<name>``)."""
    other = []
    for rank, utt in enumerate(utts):
        speaker = speakers[rank % len(speakers)]
        spk_id = f"{lang}_{speaker.name}"
        utt_id = f"{spk_id}-{utt.utt_id.rsplit('-', 1)[1]}"
        wav = audio_dir / spk_id / f"{utt_id}-{audio_key(utt.text, speaker.voice, speaker, noise_dbfs)}.wav"
        other.append(Utterance(utt_id, spk_id, speaker, utt.text, wav))
    return other


def gurmukhi_to_devanagari(text: str) -> str:
    """Punjabi in Gurmukhi as Devanagari letters of the same sounds, for a voice that reads Hindi.

    The two Unicode blocks share their layout (U+0A00 + n and U+0900 + n are the same letter);
    the Gurmukhi-only signs are tippi (nasal: anusvara), addak (the next consonant doubled:
    consonant + virama before it) and yakash (subscript ya).
    """
    out: list[str] = []
    for index, char in enumerate(text):
        code = ord(char)
        if char == "\u0a71":  # addak
            following = text[index + 1] if index + 1 < len(text) else ""
            if following and 0x0A15 <= ord(following) <= 0x0A5E:
                out.append(chr(ord(following) - 0x100) + "\u094d")
        elif char == "\u0a70":  # tippi
            out.append("\u0902")
        elif char == "\u0a75":  # yakash
            out.append("\u094d\u092f")
        elif char in "\u0a72\u0a73\u0a74":  # vowel bearers iri/ura, ek onkar: not in running text
            out.append({"\u0a72": "\u0907", "\u0a73": "\u0909", "\u0a74": "\u090f\u0915 \u0913\u0902\u0915\u093e\u0930"}[char])
        elif 0x0A01 <= code <= 0x0A6F:
            out.append(chr(code - 0x100))
        else:
            out.append(char)
    return unicodedata.normalize("NFC", "".join(out))


def strip_nukta(text: str) -> str:
    """Devanagari without the nukta (ज़ -> ज): Festival's Hindi voice crashes on it."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).replace("\u093c", ""))


# Text conversions before the other synthesizer reads a sentence (conf/synth_other.yaml).
TRANSLITERATIONS = {"gurmukhi_to_devanagari": gurmukhi_to_devanagari, "strip_nukta": strip_nukta}


def _espeak(utt: Utterance, voice: str, out: Path) -> None:
    speaker = utt.speaker
    cmd = [
        "espeak-ng", "-v", f"{voice}+{speaker.variant}", "-p", str(speaker.pitch),
        "-s", str(speaker.rate), "-w", str(out), "--stdin",
    ]
    result = subprocess.run(cmd, input=utt.text.encode("utf-8"), capture_output=True, check=False)
    if result.returncode != 0 or not out.exists():
        raise UserInputError(
            f"espeak-ng failed for {utt.utt_id} ({' '.join(cmd)}): {result.stderr.decode(errors='replace')}"
        )


def spoken_text(speaker: OtherSpeaker, text: str) -> str:
    """``text`` as ``speaker``'s voice reads it: after its transliterations (``conf/synth_other.yaml``)."""
    for name in speaker.transliterate:
        text = TRANSLITERATIONS[name](text)
    return text


def festival_script(speaker: OtherSpeaker, text: str) -> str:
    """The Festival commands that speak ``text`` (already :func:`spoken_text`) as ``speaker``,
    without saving the wave: its voice; a flat intonation model at its mean F0 for a voice that has none of its own (the NSK
    voices; Festival's Simple method, which is flat for them); its duration factor on top of the
    voice's own.  A voice with its own intonation model (``intonation: own``, the Italian ones)
    keeps it: the Simple method imposed on them declines over the whole text and fell silent
    after its first sentence."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    script = f"(voice_{speaker.voice})\n"
    if not speaker.own_intonation:
        script += (f"(set! int_simple_params '((f0_mean {speaker.f0_mean:g}) (f0_std {0.12 * speaker.f0_mean:.1f})))\n"
                   "(Parameter.set 'Int_Method 'Simple)\n")
    return script + (
        "(set! ea_stretch (Parameter.get 'Duration_Stretch))\n"
        f"(Parameter.set 'Duration_Stretch (* {speaker.stretch:g} (if ea_stretch ea_stretch 1.0)))\n"
        f'(set! ea_utt (SynthText "{quoted}"))\n'
    )


def _festival(utt: Utterance, out: Path) -> None:
    """One utterance by Festival (:func:`festival_script`), saved to ``out``."""
    speaker = utt.speaker
    assert isinstance(speaker, OtherSpeaker)
    text = spoken_text(speaker, utt.text)
    script = festival_script(speaker, text) + f'(utt.save.wave ea_utt "{out}" \'riff)\n'
    scm = out.with_suffix(".scm")
    try:
        text.encode(speaker.encoding)
    except UnicodeEncodeError as err:
        raise UserInputError(f"{utt.utt_id}: voice {speaker.voice} reads {speaker.encoding}, which cannot "
                             f"encode {text[err.start:err.end]!r} of {text!r}") from err
    scm.write_bytes(script.encode(speaker.encoding))
    result = subprocess.run(["festival", "--batch", str(scm)], capture_output=True, check=False)
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0 or not out.exists() or "SIOD ERROR" in stderr or "EST Error" in stderr:
        raise UserInputError(f"festival failed for {utt.utt_id} (voice {speaker.voice}, exit code "
                             f"{result.returncode}, text {text!r}): {stderr.strip()[-300:]}")


def synthesize(utt: Utterance, voice: str, noise_dbfs: float) -> float:
    """Speak one utterance to its wav path (atomically) and return its duration in seconds.

    espeak-ng for the corpus's speakers, Festival for the other synthesizer's
    (``OtherSpeaker``); silence padding and the seeded noise floor are the same for both.
    An existing file is reused: its name carries ``audio_key`` of everything it was
    made from, both engines are deterministic and the noise is seeded by the utterance id.
    """
    if utt.wav_path.exists():
        return sf.info(str(utt.wav_path)).duration
    utt.wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        if isinstance(utt.speaker, OtherSpeaker):
            _festival(utt, raw)
        else:
            _espeak(utt, voice, raw)
        audio, rate = sf.read(str(raw), dtype="float32")
    if audio.size == 0:
        raise UserInputError(f"the synthesizer produced no audio for {utt.utt_id}: {utt.text!r}")
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
    engines = {"festival" if isinstance(utt.speaker, OtherSpeaker) else "espeak-ng" for utt in utts}
    for engine in sorted(engines):
        if shutil.which(engine) is None:
            raise UserInputError(f"{engine} not found: run tools/install.sh (Debian packages espeak-ng, festival)")
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        futures = [pool.submit(synthesize, utt, voice, noise_dbfs) for utt in utts]
        durations = {
            utt.utt_id: future.result()
            for utt, future in tqdm(zip(utts, futures), total=len(utts), desc=f"{'/'.join(sorted(engines))} {voice}", mininterval=5)
        }
    return durations
