"""OWSM speech-to-text data directories made from our Kaldi data dirs.

ESPnet's S2T task reads, besides ``wav.scp``/``utt2spk``/``spk2utt``, three text
files per utterance (see ESPnet's ``egs2/owsm_v3.1/s2t1``):

``text``
    the decoder target, prefixed with the task tokens:
    ``<hin><asr><notimestamps> नमस्ते दुनिया``;
``text.prev``
    the previous utterance as a prompt; ``<na>`` (none) for our isolated utterances;
``text.ctc``
    the plain transcript, the CTC branch's target.

OWSM's language tokens are ISO 639-3 codes while our recipes use the ISO 639-1
codes Whisper uses (``hi``, ``pa``), hence :data:`ISO639_3`.  A language missing
there is an error naming it: guessing a token would train an adapter on a token
the model never saw with that language.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import yaml

from espnet_adapters.data.kaldi import read_map, read_map_lines, validate_data_dir, write_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir

# Our language codes -> OWSM language tokens (ISO 639-3, as in OWSM v3.1/v4 token lists).
ISO639_3: dict[str, str] = {
    "ar": "ara", "as": "asm", "bn": "ben", "de": "deu", "en": "eng", "es": "spa", "fr": "fra",
    "gu": "guj", "hi": "hin", "it": "ita", "ja": "jpn", "kn": "kan", "ko": "kor", "ml": "mal",
    "mr": "mar", "ne": "nep", "nl": "nld", "or": "ori", "pa": "pan", "pl": "pol", "pt": "por",
    "ru": "rus", "sa": "san", "sd": "snd", "ta": "tam", "te": "tel", "tr": "tur", "uk": "ukr",
    "ur": "urd", "zh": "zho",
}
ASR_TOKENS = "<asr><notimestamps>"
NO_PREVIOUS = "<na>"
# Files copied unchanged from the source data dir when present.
COPIED = ("wav.scp", "utt2spk", "spk2utt", "utt2lang", "utt2dur", "utt2category", "segments", "spk2gender")


def lang_token(lang: str) -> str:
    """OWSM's language token for one of our language codes, e.g. ``hi`` -> ``<hin>``."""
    if lang in ISO639_3.values():  # already ISO 639-3
        return f"<{lang}>"
    if lang not in ISO639_3:
        raise UserInputError(
            f"language {lang!r} has no ISO 639-3 code for OWSM's language token; "
            f"add it to ISO639_3 in {Path(__file__).name} (known: {' '.join(sorted(ISO639_3))})"
        )
    return f"<{ISO639_3[lang]}>"


def s2t_texts(
    text: Mapping[str, str], utt2lang: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """``text``, ``text.prev`` and ``text.ctc`` of an S2T dir, one language token per utterance."""
    missing = [utt for utt in text if utt not in utt2lang]
    if missing:
        raise UserInputError(f"no language for {len(missing)} utterances (first: {missing[0]}); utt2lang is needed")
    tokens = {lang: lang_token(lang) for lang in set(utt2lang.values())}
    target = {utt: f"{tokens[utt2lang[utt]]}{ASR_TOKENS} {words}" for utt, words in text.items()}
    return target, {utt: NO_PREVIOUS for utt in text}, dict(text)


def make_s2t_dir(src: Path, dst: Path, lang: str | None = None) -> int:
    """Write ``dst``: ``src``'s audio tables plus the three S2T text files; returns the utterance count.

    The language comes from ``src/utt2lang``, or from ``lang`` for every utterance
    (a single-language dir without utt2lang).  ``dst`` appears complete or not at all.
    """
    problems = validate_data_dir(src)
    if problems:
        raise UserInputError(f"{src}: not a valid data dir:\n  " + "\n  ".join(problems[:10]))
    text = read_map(src / "text")
    if (src / "utt2lang").exists():
        utt2lang = read_map(src / "utt2lang")
        if lang is not None and set(utt2lang.values()) != {lang}:
            raise UserInputError(f"{src}/utt2lang: languages {sorted(set(utt2lang.values()))}, expected only {lang}")
    elif lang is not None:
        utt2lang = {utt: lang for utt in text}
    else:
        raise UserInputError(f"{src}: no utt2lang and no language given")
    target, previous, ctc = s2t_texts(text, utt2lang)
    with atomic_dir(dst) as tmp:
        for name in COPIED:
            if (src / name).exists():
                shutil.copyfile(src / name, tmp / name)
        write_map(tmp / "text", target)
        write_map(tmp / "text.prev", previous)
        write_map(tmp / "text.ctc", ctc)
    return len(text)


def audio_type(wav_scp: Path) -> str:
    """ESPnet's loader type for a wav.scp: ``kaldi_ark`` for our ark dumps, else ``sound`` (files, pipes)."""
    first = wav_scp.read_text(encoding="utf-8").split("\n", 1)[0].split(maxsplit=1)
    if len(first) != 2:
        raise UserInputError(f"{wav_scp}:1: expected 'utt audio'")
    return "kaldi_ark" if re.search(r"\.ark:\d+$", first[1].strip()) else "sound"


def data_args(split: str, s2t_dir: Path) -> list[str]:
    """``--{split}_data_path_and_name_and_type`` options of ESPnet's S2T task for an S2T dir."""
    option = f"--{split}_data_path_and_name_and_type"
    return [
        option, f"{s2t_dir}/wav.scp,speech,{audio_type(s2t_dir / 'wav.scp')}",
        option, f"{s2t_dir}/text.prev,text_prev,text",
        option, f"{s2t_dir}/text.ctc,text_ctc,text",
        option, f"{s2t_dir}/text,text,text",
    ]


# ESPnet's S2TPreprocessor default window (seconds) when a config does not set speech_length.
DEFAULT_WINDOW = 30.0


def model_window(config: Path) -> float:
    """Seconds of audio an S2T model sees: ``preprocessor_conf.speech_length`` of its config.

    ESPnet's S2T preprocessor (training) and ``Speech2Text`` (decoding) pad every
    utterance to this window and silently cut longer ones, keeping their whole
    transcript: training on those teaches the model to invent text.
    """
    try:
        conf = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise UserInputError(f"{config}: cannot read the model config ({err})") from err
    window = (conf.get("preprocessor_conf") or {}).get("speech_length", DEFAULT_WINDOW)
    if not isinstance(window, (int, float)) or window <= 0:
        raise UserInputError(f"{config}: preprocessor_conf.speech_length must be a positive number, got {window!r}")
    return float(window)


def fitting_keys(utt2dur: Path, window: float) -> tuple[dict[str, str], dict[str, float]]:
    """Split ``utt2dur`` into the utterances that fit ``window`` (key -> duration text) and the longer ones."""
    fit: dict[str, str] = {}
    longer: dict[str, float] = {}
    for utt, (line, value) in read_map_lines(utt2dur).items():
        try:
            seconds = float(value)
        except ValueError as err:
            raise UserInputError(f"{utt2dur}:{line}: duration {value!r} is not a number") from err
        if seconds <= window:
            fit[utt] = value
        else:
            longer[utt] = seconds
    return fit, longer
