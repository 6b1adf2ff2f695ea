"""Noise and reverberation copies of a training set (stage 2, ``conf/augment/*.yaml``).

Kaldi augments with ``steps/data/augment_data_dir.py`` (MUSAN noise) and
``reverberate_data_dir.py`` (simulated room impulse responses); both need
downloads.  Here the noise is generated: white, pink (1/f) or brown (1/f^2)
Gaussian noise, seeded by the utterance id, mixed at an exact signal-to-noise
ratio measured on the speech (frames within 40 dB of the loudest, so the
silence around a sentence does not lower the signal power); the reverberation
is sox's ``reverb`` effect (Freeverb) at a chosen reverberance.

Like speed perturbation, nothing is written but the data dir: each copy's
``wav.scp`` entry pipes the original audio through ``sox ... reverb`` and
``python3 -m espnet_adapters.bin.add_noise`` (:func:`augmented_entry`), so the
format stage makes the audio, and a copy is the same on every run (the noise
seed and the choice of SNR, colour and reverberance depend only on the
utterance id, the copy and the config's seed).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

import numpy as np

from espnet_adapters.utils.config import YamlConfig

NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # spectral slope: power ~ 1/f^alpha
ACTIVE_RANGE_DB = 40.0  # frames this far below the loudest one count as silence
FRAME = 400  # 25 ms at 16 kHz, for the speech power


@dataclass(frozen=True)
class AugmentConfig(YamlConfig):
    """How many noisy / reverberant copies of each training utterance, and how made."""

    copies: int = 2  # augmented copies per utterance (the clean original is kept beside them)
    snr_db: tuple[float, ...] = (5.0, 10.0, 15.0, 20.0)  # one drawn per copy; () = no noise
    noise_colors: tuple[str, ...] = ("white", "pink", "brown")  # one drawn per copy
    reverb_prob: float = 0.5  # probability that a copy is reverberated (before the noise)
    reverberance: tuple[float, ...] = (30.0, 50.0, 70.0)  # sox reverb's reverberance (%), one drawn
    seed: int = 0
    source: str = "<default AugmentConfig>"

    def __post_init__(self) -> None:
        if self.copies < 1:
            raise ValueError(f"copies: at least 1, got {self.copies}")
        unknown = sorted(set(self.noise_colors) - set(NOISE_COLORS))
        if unknown:
            raise ValueError(f"noise_colors: {', '.join(unknown)} unknown; known: {', '.join(NOISE_COLORS)}")
        if self.snr_db and not self.noise_colors:
            raise ValueError("noise_colors: empty while snr_db asks for noise")
        if not 0.0 <= self.reverb_prob <= 1.0:
            raise ValueError(f"reverb_prob: between 0 and 1, got {self.reverb_prob}")
        if self.reverb_prob > 0 and not self.reverberance:
            raise ValueError("reverberance: empty while reverb_prob > 0")
        if any(not 0.0 <= value <= 100.0 for value in self.reverberance):
            raise ValueError(f"reverberance: percentages 0-100, got {list(self.reverberance)}")
        if not self.snr_db and self.reverb_prob == 0:
            raise ValueError("nothing to do: snr_db is empty and reverb_prob is 0")


@dataclass(frozen=True)
class CopySpec:
    """What one augmented copy of one utterance gets."""

    snr_db: float | None
    color: str | None
    reverberance: float | None
    noise_seed: int

    def describe(self) -> str:
        """``"pink noise at 10 dB SNR, reverb 50%"``, for logs and ``utt2aug``."""
        parts = []
        if self.reverberance is not None:
            parts.append(f"reverb{self.reverberance:g}")
        if self.snr_db is not None:
            parts.append(f"{self.color}{self.snr_db:g}dB")
        return "+".join(parts) or "clean"


def _rng(*keys: object) -> np.random.Generator:
    digest = hashlib.sha256(repr(keys).encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def plan_copy(config: AugmentConfig, utt: str, copy: int) -> CopySpec:
    """The choices for copy ``copy`` (1-based) of ``utt``: a function of the ids and the seed only."""
    rng = _rng(config.seed, utt, copy)
    reverberance = None
    if config.reverb_prob > 0 and rng.random() < config.reverb_prob:
        reverberance = float(config.reverberance[rng.integers(len(config.reverberance))])
    snr = color = None
    if config.snr_db:
        snr = float(config.snr_db[rng.integers(len(config.snr_db))])
        color = config.noise_colors[rng.integers(len(config.noise_colors))]
    if snr is None and reverberance is None:  # reverb_prob < 1 and no noise: this copy is reverberated anyway
        reverberance = float(config.reverberance[rng.integers(len(config.reverberance))])
    return CopySpec(snr, color, reverberance, int(rng.integers(2**31)))


def augmented_entry(entry: str, spec: CopySpec) -> str:
    """A ``wav.scp`` value whose output is ``entry``'s audio augmented as ``spec`` says."""
    entry = entry.strip()
    piped = entry.endswith("|")
    commands = [entry[:-1].rstrip()] if piped else []
    source = "-t wav -" if piped else shlex.quote(entry)
    if spec.reverberance is not None:
        # -R: no random dither, the same samples on every run.  The length is kept (sox cuts the
        # reverb's tail at the end of the input; a recording's own trailing silence holds it).
        commands.append(f"sox -R {source} -t wav - reverb {spec.reverberance:g} 50 100")
    elif not piped:
        commands.append(f"sox -R {source} -t wav -")
    if spec.snr_db is not None:
        commands.append(f"python3 -m espnet_adapters.bin.add_noise --snr_db {spec.snr_db:g} "
                        f"--color {spec.color} --seed {spec.noise_seed}")
    return " | ".join(commands) + " |"


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise whose power spectrum falls as 1/f^alpha (white, pink, brown)."""
    white = rng.standard_normal(num_samples)
    alpha = NOISE_COLORS[color]
    if alpha:
        spectrum = np.fft.rfft(white)
        freqs = np.arange(len(spectrum), dtype=np.float64)
        freqs[0] = freqs[1] if len(freqs) > 1 else 1.0  # no infinite DC
        white = np.fft.irfft(spectrum / freqs ** (alpha / 2.0), n=num_samples)
    white -= white.mean()
    power = float(np.mean(white**2))
    return (white / np.sqrt(power)) if power > 0 else white


def speech_power(audio: np.ndarray) -> float:
    """Mean power of the frames within :data:`ACTIVE_RANGE_DB` of the loudest frame."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME) if len(audio) >= FRAME else audio[None, :]
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    peak = float(power.max())
    if peak <= 0:
        return 0.0
    return float(power[power >= peak * 10.0 ** (-ACTIVE_RANGE_DB / 10.0)].mean())


def add_noise(audio: np.ndarray, snr_db: float, color: str, seed: int) -> np.ndarray:
    """``audio`` plus seeded ``color`` noise, ``snr_db`` below its speech power; clipped to [-1, 1]."""
    signal = speech_power(audio)
    if signal <= 0:
        raise ValueError("the audio is silent: no speech power to set the SNR against")
    noise = colored_noise(len(audio), color, np.random.default_rng(seed))
    noisy = audio.astype(np.float64) + noise * np.sqrt(signal / 10.0 ** (snr_db / 10.0))
    return np.clip(noisy, -1.0, 1.0).astype(np.float32)
