"""Paired bootstrap confidence intervals for the difference between two systems' error rates.

The question a results table must answer is not only "is the adapter's WER
lower" but "would it still be lower on another test set of the same kind".
The paired bootstrap (Bisani & Ney, ICASSP 2004; Koehn, EMNLP 2004) answers it
from the per-utterance counts of both systems on the *same* utterances:

1. draw ``n`` utterance indices with replacement (``n`` = the test set's size),
   the same indices for both systems: that is the pairing, which removes the
   variance that comes from some utterances being harder than others for both;
2. on that resample compute each system's **corpus-level** rate, sum of
   counts / sum of reference tokens (not a mean of per-utterance rates, so
   long utterances weigh as much as they do in the reported WER), and their
   difference, ``system - base`` in percentage points, and the relative
   change ``100 * (system - base) / base`` in %;
3. repeat ``num_resamples`` times (default 1000); the 95% interval is the
   2.5th and 97.5th percentile of the resampled values (percentile method).

The point estimate is the difference on the whole test set, not the mean of
the resamples.  The random generator is NumPy's PCG64 seeded with ``seed``
(default 0), so the same counts always give the same interval; since the
indices depend only on ``seed`` and ``n``, WER, CER and Corr of one comparison
are computed on the same resamples.

The "counts" are whatever is summed: word errors for WER, character errors for
CER, hits for sclite's Corr (words correct).  Pure NumPy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
# Resamples drawn per chunk are limited to about this many indices, so that a
# large test set (10^5 utterances) does not need a 1000 x n index matrix at once.
_CHUNK_INDICES = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with the bounds of its bootstrap interval (``nan`` when undefined)."""

    estimate: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def contains(self, value: float) -> bool:
        return self.defined and self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval is on one side of 0: the difference is significant."""
        return self.defined and not self.contains(0.0)


@dataclass(frozen=True)
class PairedComparison:
    """``system`` vs ``base`` on the same utterances, rates in %."""

    base_rate: float
    system_rate: float
    difference: Interval  # system - base, percentage points
    relative: Interval | None  # 100 * (system - base) / base, in %; None when the base rate is 0
    num_utts: int
    num_resamples: int
    seed: int
    confidence: float


def _as_counts(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-utterance counts, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name}: counts must be finite and non-negative")
    return array


def _resample_chunks(num_utts: int, num_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index matrices (resamples x ``num_utts``), drawn in chunks from one seeded generator."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_INDICES // num_utts)
    done = 0
    while done < num_resamples:
        size = min(per_chunk, num_resamples - done)
        yield rng.integers(0, num_utts, size=(size, num_utts))
        done += size


def _interval(estimate: float, samples: np.ndarray, confidence: float) -> Interval:
    """Percentile interval; ``nan`` bounds if any resample is undefined (e.g. a zero denominator)."""
    if samples.size == 0 or not np.all(np.isfinite(samples)):
        return Interval(estimate, float("nan"), float("nan"))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return Interval(estimate, float(low), float(high))


def paired_bootstrap(
    ref_lens: ArrayLike,
    base_counts: ArrayLike,
    system_counts: ArrayLike,
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedComparison:
    """Paired bootstrap of ``rate(system) - rate(base)``, rate = 100 * sum(counts) / sum(ref_lens).

    ``ref_lens[i]``, ``base_counts[i]`` and ``system_counts[i]`` belong to the
    same utterance ``i`` (the same reference for both systems).  A resample
    without reference tokens (possible only when most references are empty)
    makes the interval undefined (``nan`` bounds).  The relative change is
    ``None`` when the base rate is 0 on the whole set; its bounds are ``nan``
    when some resample has a base rate of 0.
    """
    refs = _as_counts("ref_lens", ref_lens)
    base = _as_counts("base_counts", base_counts)
    system = _as_counts("system_counts", system_counts)
    if not (refs.size == base.size == system.size):
        raise ValueError(
            f"need one value per utterance for each array, got {refs.size}, {base.size} and {system.size}"
        )
    if refs.size == 0:
        raise ValueError("no utterances")
    if refs.sum() <= 0:
        raise ValueError("the references have no tokens: the rates are undefined")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    total = refs.sum()
    base_rate = 100.0 * base.sum() / total
    system_rate = 100.0 * system.sum() / total

    differences, relatives = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for index in _resample_chunks(refs.size, num_resamples, seed):
            denominators = refs[index].sum(axis=1)
            base_rates = 100.0 * base[index].sum(axis=1) / denominators
            system_rates = 100.0 * system[index].sum(axis=1) / denominators
            differences.append(system_rates - base_rates)
            relatives.append(100.0 * (system_rates - base_rates) / base_rates)
    relative = None
    if base_rate > 0:
        relative = _interval(100.0 * (system_rate - base_rate) / base_rate, np.concatenate(relatives), confidence)
    return PairedComparison(
        base_rate=float(base_rate),
        system_rate=float(system_rate),
        difference=_interval(float(system_rate - base_rate), np.concatenate(differences), confidence),
        relative=relative,
        num_utts=int(refs.size),
        num_resamples=num_resamples,
        seed=seed,
        confidence=confidence,
    )
