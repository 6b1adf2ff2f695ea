"""Mixing prepared corpora of one language into one training (or pooled test) set.

Why weights instead of "concatenate everything": corpora differ in size by orders
of magnitude, and the mix decides what the adapter learns (Kathbath read speech
vs. Common Voice crowd recordings vs. IndicVoices spontaneous speech).  A weight
per source says which share of the *utterances* each contributes, e.g. kathbath
0.8 / commonvoice 0.2, whatever their sizes; without weights every utterance is
taken (pooling test sets, where nothing may be dropped).

Counts.  Weights are normalised to shares ``w_s``.  The default total is the
largest one every source can supply at these shares, ``floor(min n_s / w_s)``; a
larger total is an error naming the limiting source, because the mix would no
longer follow the weights.  Counts are rounded by largest remainder, so they sum
to the total and each is within 1 of ``w_s * total``.  Which utterances a source
contributes is a seeded random sample (the seed and the source name), so a mix is
reproducible and adding a source does not change what the others contribute.

Data dirs.  :func:`mix_data_dirs` reads Kaldi dirs written by ``prepare_corpus``,
mixes them and writes one validated dir through
:func:`~espnet_adapters.data.corpora.common.write_split`, with ``utt2category`` =
source name (so results can be broken down per source) and ``stats.json`` with
the counts and hours per source.  When some sources have ``segments`` and others
not, the unsegmented utterances become whole-recording segments
``[0, utt2dur]`` keyed by their utterance id, because Kaldi allows ``segments``
only for all utterances or none.  Utterances whose sentence occurs in given
held-out dirs can be dropped first (:func:`~espnet_adapters.data.corpora.splits.drop_shared_sentences`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from espnet_adapters.data.corpora.common import Utterance, split_stats, write_split
from espnet_adapters.data.corpora.splits import drop_shared_sentences
from espnet_adapters.data.kaldi import read_map, validate_data_dir
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

# n / w is computed in floating point: 8 / 0.8 must give 10, not 9.999999999999998.
_FLOOR_SLACK = 1e-9


def mix_counts(available: Mapping[str, int], weights: Mapping[str, float], total: int | None) -> dict[str, int]:
    """Utterances to take per source (see the module doc).

    Args:
        available: source -> utterances it has.
        weights: source -> weight (any positive scale); every source needs one.
        total: utterances in the mix; ``None`` = the largest the sources can supply.
    """
    shares = _shares(available, weights)
    limits = {name: math.floor(available[name] / share + _FLOOR_SLACK) for name, share in shares.items()}
    limiting = min(sorted(limits), key=lambda name: limits[name])
    if total is None:
        total = limits[limiting]
    if total <= 0:
        raise UserInputError(
            f"cannot mix {total} utterances (source {limiting!r} has {available[limiting]} utterances)"
        )
    if total > limits[limiting]:
        raise UserInputError(
            f"cannot mix {total} utterances: source {limiting!r} has {available[limiting]} utterances but its"
            f" weight {shares[limiting]:.4g} needs {shares[limiting] * total:.1f}; at most {limits[limiting]}"
            " utterances can be mixed at these weights"
        )
    return _largest_remainder(shares, total)


def _shares(available: Mapping[str, int], weights: Mapping[str, float]) -> dict[str, float]:
    """Weights normalised to sum to 1, after checking they match the sources."""
    unknown = sorted(set(weights) - set(available))
    if unknown:
        raise UserInputError(
            f"weight for unknown source {', '.join(unknown)} (sources: {', '.join(sorted(available))})"
        )
    missing = sorted(set(available) - set(weights))
    if missing:
        raise UserInputError(f"source {', '.join(missing)} has no weight (give every source a weight, or none)")
    bad = [f"{name}={w}" for name, w in sorted(weights.items()) if not (math.isfinite(w) and w > 0)]
    if bad:
        raise UserInputError(f"weights must be positive numbers, got {', '.join(bad)}")
    total = sum(weights.values())
    return {name: weights[name] / total for name in sorted(weights)}


def _largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to ``total``, each the floor or ceiling of its exact share."""
    exact = {name: share * total for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: (counts[name] - exact[name], name))
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def mix(
    sources: Mapping[str, list[Utterance]],
    weights: Mapping[str, float] | None,
    total: int | None,
    seed: int,
) -> list[tuple[str, Utterance]]:
    """``(source, utterance)`` pairs of the mix; ``weights=None`` takes every utterance."""
    if weights is None:
        if total is not None:
            raise UserInputError("a number of utterances needs weights (without weights every utterance is taken)")
        counts = {name: len(utts) for name, utts in sources.items()}
    else:
        counts = mix_counts({name: len(utts) for name, utts in sources.items()}, weights, total)
    selected = []
    for name in sorted(counts):
        pool = sorted(sources[name], key=lambda u: u.utt_id)
        chosen = random.Random(f"{seed}:{name}").sample(pool, counts[name])
        selected.extend((name, utt) for utt in sorted(chosen, key=lambda u: u.utt_id))
    return selected


def read_utterances(directory: Path) -> list[Utterance]:
    """The utterances of a data dir written by ``prepare_corpus`` (validated first).

    Needs ``wav.scp text utt2spk utt2lang utt2dur``; reads ``segments`` and
    ``spk2gender`` when present.
    """
    problems = validate_data_dir(directory)
    if problems:
        raise UserInputError(f"{directory}: invalid data dir ({len(problems)} problems), first: {problems[0]}")
    for name in ("utt2lang", "utt2dur"):
        if not (directory / name).is_file():
            raise UserInputError(f"{directory / name}: required for mixing (prepare the dir with prepare_corpus)")
    wav_scp = read_map(directory / "wav.scp")
    text = read_map(directory / "text")
    utt2lang = read_map(directory / "utt2lang")
    utt2dur = read_map(directory / "utt2dur")
    spk2gender = read_map(directory / "spk2gender") if (directory / "spk2gender").is_file() else {}
    segments = read_map(directory / "segments") if (directory / "segments").is_file() else {}
    utts = []
    for utt, spk in read_map(directory / "utt2spk").items():
        recording, segment = None, None
        if utt in segments:
            recording, start, end = segments[utt].split()
            segment = (float(start), float(end))
        utts.append(Utterance(
            utt_id=utt, speaker=spk, audio=wav_scp[recording or utt], text=text[utt], lang=utt2lang[utt],
            duration=float(utt2dur[utt]), gender=spk2gender.get(spk), recording=recording, segment=segment,
        ))
    return utts


def common_segmentation(utts: list[Utterance]) -> list[Utterance]:
    """All utterances segmented if any is: unsegmented ones become ``[0, duration]`` of themselves."""
    if all(u.segment is None for u in utts) or all(u.segment is not None for u in utts):
        return utts
    return [u if u.segment is not None else replace(u, recording=u.utt_id, segment=(0.0, u.duration)) for u in utts]


def _check_unique_ids(selected: list[tuple[str, Utterance]]) -> None:
    """Utterance ids, and recording ids with their audio, must not clash across sources."""
    owner: dict[str, str] = {}
    recordings: dict[str, tuple[str, str]] = {}
    for name, utt in selected:
        if utt.utt_id in owner:
            raise UserInputError(f"utterance {utt.utt_id} is in sources {owner[utt.utt_id]} and {name}")
        owner[utt.utt_id] = name
        if utt.recording is None:
            continue
        first = recordings.setdefault(utt.recording, (name, utt.audio))
        if first[1] != utt.audio:
            raise UserInputError(
                f"recording {utt.recording} is {first[1]!r} in source {first[0]} but {utt.audio!r} in {name}"
            )


def mix_data_dirs(
    sources: Mapping[str, Path],
    weights: Mapping[str, float] | None,
    out_dir: Path,
    total: int | None,
    seed: int,
    held_out: Sequence[Path] = (),
) -> dict:
    """Mix the data dirs ``sources`` (name -> dir) into ``out_dir``; returns its stats.

    ``weights=None`` pools every utterance.  Utterances whose normalised text is in
    a ``held_out`` dir are dropped before mixing (counted per source).
    """
    pools = {name: read_utterances(Path(path)) for name, path in sources.items()}
    dropped = dict.fromkeys(pools, 0)
    if held_out:
        held = [read_utterances(Path(path)) for path in held_out]
        for name in pools:
            pools[name], dropped[name] = drop_shared_sentences(pools[name], held)
            logger.info("%s: dropped %d utterances whose sentence is in a held-out dir", name, dropped[name])
    pairs = mix(pools, weights, total, seed)
    selected = list(zip([name for name, _ in pairs], common_segmentation([utt for _, utt in pairs])))
    _check_unique_ids(selected)
    shares = _shares({n: len(p) for n, p in pools.items()}, weights) if weights is not None else {}
    per_source = {
        name: {
            "dir": str(sources[name]),
            "weight": shares.get(name),
            "available": len(pools[name]),
            "dropped_shared_text": dropped[name],
            **split_stats(utt for source, utt in selected if source == name),
        }
        for name in sorted(pools)
    }
    for name, stats in per_source.items():
        logger.info("%s: %d of %d utterances, %.3f h", name, stats["utterances"], stats["available"], stats["hours"])
    return write_split(
        out_dir, [utt for _, utt in selected],
        category={utt.utt_id: name for name, utt in selected},
        extra_stats={"seed": seed, "sources": per_source},
    )
