"""Decoding code-switched utterances: LID-detected segments routed to language adapters (codeswitch_decode).

Per utterance, :func:`analyse` runs the *base* encoder (adapters off) and the
LID once: window posteriors, the detected switches (:mod:`.detect`) and each
system's pieces (spans of the utterance with their trimmed log-mel).
:func:`decode_pieces` decodes each piece with its language's adapter alone (or
none); :func:`joined_hyps` joins an utterance's piece texts in time order.
:func:`decode_codeswitch` does it all for every system and writes the outputs
(listed in ``python -m espnet_adapters.bin.codeswitch_decode --help``).

Systems (:data:`SYSTEMS`):
  segments         the LID-detected segments
  oracle_segments  the true segments and languages (segments_truth): the upper bound
  utterance_hard   one LID decision on all the utterance's frames -> one adapter for the whole utterance
  base             no adapter; Whisper detects the language itself
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from tqdm import tqdm
from transformers import WhisperProcessor

from espnet_adapters.codeswitch.detect import Smoothing, Span, detect_spans, switch_times, window_centers
from espnet_adapters.codeswitch.truth import (
    DETECTED, POSTERIORS, SEGMENTS_TRUTH, TruthSegment, read_segments_truth, write_segment_table, write_times,
)
from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map_lines
from espnet_adapters.decode_io import write_decode_outputs, write_hyp_files
from espnet_adapters.lid.data import ENCODER_STRIDE, base_encoder_frames
from espnet_adapters.lid.models import predict_proba, window_posteriors
from espnet_adapters.lid.store import LoadedLid, lid_base_model, load_lid
from espnet_adapters.routing.decode import batch_key, decode_routed
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, safeguard_stats
from espnet_adapters.whisper.features import SAMPLE_RATE, logmel
from espnet_adapters.whisper.inputs import check_adapter_encoder_trim
from espnet_adapters.whisper.model import pick_device
from espnet_adapters.whisper.routing import adapter_languages, load_routed_whisper

logger = logging.getLogger(__name__)

SYSTEMS = ("segments", "oracle_segments", "utterance_hard", "base")
SEGMENT_SYSTEM = "segments"


# --------------------------------------------------------------------------- per-utterance analysis


@dataclass(frozen=True)
class Piece:
    """One decoding unit of a system: a span of an utterance and its features."""

    key: str
    utt: str
    span: Span
    feats: np.ndarray


@dataclass
class Timer:
    """Seconds spent per activity, for stats.json."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, start: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class Windowing:
    """The LID's sliding windows and the smoothing of their labels."""

    win_frames: int
    hop_frames: int
    frame_seconds: float
    smoothing: Smoothing


@dataclass
class Analysis:
    """What the analysis pass gives: pieces per system, window posteriors and detected switches per utterance."""

    pieces: dict[str, list[Piece]]
    windows: dict[str, np.ndarray]  # utt -> (n_windows, 1 + n_labels)
    detected: dict[str, list[float]]
    audio_seconds: float = 0.0


def _cut(audio: np.ndarray, span: Span, extractor: Any, where: str) -> np.ndarray:
    """The trimmed log-mel of one span of the audio, as if it were an utterance of its own."""
    piece = audio[int(round(span.start * SAMPLE_RATE)) : int(round(span.end * SAMPLE_RATE))]
    return logmel(piece, extractor, where=f"{where} ({span.start:.2f}-{span.end:.2f} s)")


def _span_pieces(utt: str, spans: Sequence[Span], audio: np.ndarray, extractor: Any, where: str) -> list[Piece]:
    return [Piece(f"{utt}-{index:02d}", utt, span, _cut(audio, span, extractor, where))
            for index, span in enumerate(spans)]


def analyse(
    model: PeftModel, processor: WhisperProcessor, lid: LoadedLid, wav_scp: Mapping[str, tuple[int, str]],
    wav_scp_path: Path, truth: Mapping[str, list[TruthSegment]], systems: Sequence[str], windowing: Windowing,
    timer: Timer,
) -> Analysis:
    """Read every utterance, run the base encoder and the LID once, and cut each system's pieces."""
    extractor = processor.feature_extractor
    result = Analysis(defaultdict(list), {}, {})
    for utt, (lineno, entry) in tqdm(wav_scp.items(), desc="encoder + lid", mininterval=10):
        where = f"{wav_scp_path}:{lineno}"
        start = time.perf_counter()
        audio = read_audio(entry, SAMPLE_RATE, where)
        feats = logmel(audio, extractor, where=where)
        frames = base_encoder_frames(model, feats)
        timer.add("encoder", start)
        start = time.perf_counter()
        posteriors = window_posteriors(frames, lid.model, windowing.win_frames, windowing.hop_frames).numpy()
        utterance = predict_proba(lid.model, [frames], 1)[0].numpy()
        timer.add("lid", start)
        duration = len(audio) / SAMPLE_RATE
        centers = window_centers(len(frames), windowing.win_frames, windowing.hop_frames, windowing.frame_seconds)
        detected = detect_spans(posteriors, centers, duration, lid.labels, windowing.smoothing)
        result.windows[utt] = np.column_stack([centers, posteriors]).astype(np.float32)
        result.detected[utt] = switch_times(detected)
        result.audio_seconds += duration
        whole = {"utterance_hard": lid.labels[int(utterance.argmax())], "base": None}
        start = time.perf_counter()
        for system in systems:
            if system in whole:
                result.pieces[system].append(Piece(utt, utt, Span(0.0, duration, whole[system]), feats))
            else:
                spans = detected if system == SEGMENT_SYSTEM else [Span(s.start, s.end, s.lang) for s in truth[utt]]
                result.pieces[system] += _span_pieces(utt, spans, audio, extractor, where)
        timer.add("segment_features", start)
    return result


# --------------------------------------------------------------------------- decoding


def decode_pieces(
    model: PeftModel, processor: WhisperProcessor, pieces: Sequence[Piece], opts: DecodeOptions,
    stats: dict[str, int] | None = None, cut_layer: int | None = None,
) -> dict[str, tuple[str, str]]:
    """key -> (decoded language, text): each piece with its language's adapter alone, or none (lang None).

    A piece's token cap comes from its span's duration; ``stats`` counts the
    safeguards (decode_features); ``cut_layer``: the adapters' encoder cut layer.
    """
    languages = adapter_languages(model)
    weights, routed = {}, {}
    for piece in pieces:
        row = torch.zeros(len(languages))
        if piece.span.lang is not None:
            row[languages.index(piece.span.lang)] = 1.0
        weights[piece.key], routed[piece.key] = row, piece.span.lang
    items = [(piece.key, piece.feats, batch_key(weights[piece.key], languages)) for piece in pieces]
    durations = {piece.key: piece.span.end - piece.span.start for piece in pieces}
    hyps = decode_routed(model, processor, items, None, weights, routed, opts, durations, stats, cut_layer)
    return {hyp.utt_id: (hyp.lang, hyp.text) for hyp in hyps}


def joined_hyps(pieces: Sequence[Piece], decoded: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """utt -> its pieces' texts joined in time order (pieces are listed in time order per utterance)."""
    texts: dict[str, list[str]] = defaultdict(list)
    for piece in pieces:
        texts[piece.utt].append(decoded[piece.key][1])
    return {utt: " ".join(text for text in parts if text) for utt, parts in texts.items()}


# --------------------------------------------------------------------------- the whole run


def make_windowing(
    processor: WhisperProcessor, win_seconds: float, hop_seconds: float, smoothing: Smoothing,
) -> Windowing:
    """Window, hop and smoothing in encoder frames (2 log-mel hops each: 20 ms for Whisper)."""
    frame_seconds = ENCODER_STRIDE * processor.feature_extractor.hop_length / SAMPLE_RATE
    win, hop = round(win_seconds / frame_seconds), round(hop_seconds / frame_seconds)
    if win < 1 or hop < 1:
        raise UserInputError(f"--win_seconds and --hop_seconds must be at least one frame ({frame_seconds} s)")
    return Windowing(win, hop, frame_seconds, smoothing)


def read_truth(
    data_dir: Path, systems: Sequence[str], utts: Sequence[str], languages: Sequence[str],
) -> dict[str, list[TruthSegment]]:
    """The true segments, needed by oracle_segments only; every language must have an adapter."""
    if "oracle_segments" not in systems:
        return {}
    path = data_dir / SEGMENTS_TRUTH
    truth = read_segments_truth(path)
    for utt in utts:
        if utt not in truth:
            raise UserInputError(f"{path}: no segments for utterance {utt}")
        unknown = [seg.lang for seg in truth[utt] if seg.lang not in languages]
        if unknown:
            raise UserInputError(f"{path}: {utt}: no adapter for language {unknown[0]} (--adapter)")
    return truth


def system_stats(pieces: Sequence[Piece], seconds: float, n_utts: int, audio_seconds: float) -> dict[str, Any]:
    """A system's decoding time in stats.json."""
    return {"pieces": len(pieces), "decode_seconds": round(seconds, 3),
            "ms_per_utterance": round(1000 * seconds / n_utts, 2), "rtf": round(seconds / audio_seconds, 4)}


def write_outputs(out: Path, analysis: Analysis, decoded: Mapping[str, Mapping[str, tuple[str, str]]],
                  stats: Mapping[str, Any]) -> None:
    """Every output, into a temporary dir swapped in at the end (espnet_adapters.decode_io)."""

    def systems(tmp: Path) -> None:
        for system, results in decoded.items():
            pieces = analysis.pieces[system]
            write_hyp_files(tmp / system, joined_hyps(pieces, results))
            write_segment_table(tmp / system / "hyp_segments", [
                (p.utt, p.span.start, p.span.end, results[p.key][0], results[p.key][1]) for p in pieces
            ])
        write_times(tmp / SEGMENT_SYSTEM / DETECTED, analysis.detected)
        (tmp / SEGMENT_SYSTEM / POSTERIORS).mkdir(parents=True)
        for utt, windows in analysis.windows.items():
            np.save(tmp / SEGMENT_SYSTEM / POSTERIORS / f"{utt}.npy", windows)

    write_decode_outputs(out, stats, more=systems)


def decode_codeswitch(
    data_dir: Path, lid_dir: Path, adapters: Mapping[str, Path], out_dir: Path, options: DecodeOptions, *,
    whisper_model: str | None = None, systems: Sequence[str] = SYSTEMS, win_seconds: float = 1.0,
    hop_seconds: float = 0.2, smoothing: Smoothing = Smoothing(), ngpu: int = 0, num_threads: int = 1,
) -> None:
    """Analyse every utterance of ``data_dir`` once, decode each system's pieces, write the outputs to ``out_dir``.

    ``adapters`` maps each LID label to its adapter dir; ``whisper_model`` None
    is lid.json's base model; ``num_threads`` is only recorded in stats.json.
    """
    cut_layer = check_adapter_encoder_trim(list(adapters.values()), options.encoder_trim, options.encoder_span)
    lid = load_lid(lid_dir, expected_labels=list(adapters))
    whisper_model = lid_base_model(lid_dir, lid, whisper_model)
    device = pick_device(ngpu)
    lid.model.to(device)
    model, processor = load_routed_whisper(whisper_model, device, adapters)
    windowing = make_windowing(processor, win_seconds, hop_seconds, smoothing)
    wav_scp_path = data_dir / "wav.scp"
    wav_scp = read_map_lines(wav_scp_path)
    truth = read_truth(data_dir, systems, list(wav_scp), adapter_languages(model))
    systems = [system for system in SYSTEMS if system in systems]
    timer = Timer()
    analysis = analyse(model, processor, lid, wav_scp, wav_scp_path, truth, systems, windowing, timer)
    decoded, per_system = {}, {}
    for system in systems:
        opts = dataclasses.replace(options, lang_mode="auto" if system == "base" else "forced")
        start = time.perf_counter()
        counts = safeguard_stats()
        decoded[system] = decode_pieces(model, processor, analysis.pieces[system], opts, counts, cut_layer=cut_layer)
        per_system[system] = system_stats(analysis.pieces[system], time.perf_counter() - start,
                                          len(wav_scp), analysis.audio_seconds) | counts
        logger.info("%s: %d pieces in %.1f s", system, len(analysis.pieces[system]),
                    per_system[system]["decode_seconds"])
    stats = {
        "utterances": len(wav_scp),
        "audio_seconds": round(analysis.audio_seconds, 2),
        "lid": {"lid_dir": str(lid_dir), "labels": lid.labels, "win_frames": windowing.win_frames,
                "hop_frames": windowing.hop_frames, "frame_seconds": windowing.frame_seconds,
                "smoothing": windowing.smoothing.as_dict()},
        "analysis_seconds": {name: round(value, 3) for name, value in timer.seconds.items()},
        "lid_ms_per_utterance": round(1000 * timer.seconds["lid"] / len(wav_scp), 3),
        "detected_switches": sum(len(times) for times in analysis.detected.values()),
        "systems": per_system,
        "whisper_model": whisper_model,
        "adapters": {lang: str(path) for lang, path in adapters.items()},
        "options": {name: value for name, value in options.as_dict().items() if name != "lang_mode"},
        "device": str(device),
        "num_threads": num_threads,
    }
    write_outputs(out_dir, analysis, decoded, stats)
    logger.info("decoded %d code-switched utterances (%s) -> %s", len(wav_scp), ", ".join(systems), out_dir)
