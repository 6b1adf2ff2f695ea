"""Transcribing one recording: windows -> base encoder -> LID -> routing -> adapter decoding.

Per window of at most 30 s (:func:`~espnet_adapters.transcribe.audio.split_windows`):
the base encoder (adapters off, as the LID saw it in training) gives the frames
the project's LID classifies, once for the window (its language posteriors)
and in sliding windows (the ``lid_timeline`` of the JSON, the demo's plot);
a routing strategy turns the window's posteriors into adapter weights
(:func:`espnet_adapters.whisper.routing.route`); the window is decoded under
those weights, in the language of the largest weight, with the recipe's
decoding rules (``--decode_config``, whose ``encoder_trim`` the adapters were
trained with).  ``--route hierarchical`` needs the export's language families;
``--lang X`` forces X's adapter; ``--route base`` decodes with
no adapter and Whisper's own language detection.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from espnet_adapters.codeswitch.decode import make_windowing
from espnet_adapters.codeswitch.detect import window_centers
from espnet_adapters.data.audio import read_audio
from espnet_adapters.lid.data import base_encoder_frames
from espnet_adapters.lid.models import predict_proba, window_posteriors
from espnet_adapters.lid.store import LoadedLid, load_lid
from espnet_adapters.routing.decode import batch_key, decode_routed
from espnet_adapters.transcribe.audio import split_windows
from espnet_adapters.transcribe.formats import Segment, Transcript, probabilities
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, safeguard_stats
from espnet_adapters.whisper.features import SAMPLE_RATE, logmel
from espnet_adapters.whisper.inputs import check_adapter_encoder_trim
from espnet_adapters.whisper.model import pick_device
from espnet_adapters.whisper.routing import adapter_languages, load_routed_whisper, route, routed_languages

logger = logging.getLogger(__name__)

ROUTES = ("hard", "soft", "threshold", "hierarchical", "base")


@dataclass(frozen=True)
class RouteOptions:
    """How a window's adapters are chosen: ``route`` (ROUTES), or ``lang`` forcing one adapter."""

    route: str = "soft"
    lang: str | None = None
    tau: float = 0.5
    top_k: int = 2
    families: dict[str, str] | None = None  # language -> family (hierarchical)

    def __post_init__(self) -> None:
        if self.route not in ROUTES:
            raise UserInputError(f"--route {self.route}: expected one of {', '.join(ROUTES)}")
        if not 0.0 <= self.tau <= 1.0:
            raise UserInputError(f"--tau {self.tau}: expected a probability in [0, 1]")
        if self.top_k < 1:
            raise UserInputError(f"--top_k {self.top_k}: expected >= 1")

    @property
    def name(self) -> str:
        return f"lang={self.lang}" if self.lang else self.route


@dataclass(frozen=True)
class WindowOptions:
    """Recording windows (transcribe.audio) and the LID timeline's sliding windows."""

    window_seconds: float = 30.0
    search_seconds: float = 5.0
    lid_win_seconds: float = 1.0
    lid_hop_seconds: float = 0.2


class Transcriber:
    """The base model with every adapter, the LID, and the options: loaded once, used for every file."""

    def __init__(
        self, adapters: Mapping[str, Path], lid_dir: Path | None, whisper_model: str, options: DecodeOptions,
        routing: RouteOptions, windows: WindowOptions = WindowOptions(), ngpu: int = 0,
    ) -> None:
        self.adapter_names, self.has_lid = sorted(adapters), lid_dir is not None
        self._check(routing)
        self.cut_layer = check_adapter_encoder_trim(list(adapters.values()), options.encoder_trim, options.encoder_span)
        self.device = pick_device(ngpu)
        self.lid: LoadedLid | None = None
        if lid_dir is not None:
            self.lid = load_lid(lid_dir, expected_labels=list(adapters))
            self.lid.model.to(self.device)
        self.model, self.processor = load_routed_whisper(whisper_model, self.device, adapters)
        self.languages = adapter_languages(self.model)
        self.options, self.routing, self.windows = options, routing, windows
        self.windowing = make_windowing(self.processor, windows.lid_win_seconds, windows.lid_hop_seconds, 1)
        self.safeguards = safeguard_stats()

    def _check(self, routing: RouteOptions) -> None:
        if routing.lang is not None and routing.lang not in self.adapter_names:
            raise UserInputError(f"--lang {routing.lang}: no adapter for it (adapters: {', '.join(self.adapter_names)})")
        if routing.lang is None and routing.route == "hierarchical" and (
                routing.families is None or set(self.adapter_names) - set(routing.families)):
            raise UserInputError("--route hierarchical needs every adapter's family (an export made with --families)")
        if routing.lang is None and routing.route != "base" and not self.has_lid:
            raise UserInputError(f"--route {routing.route} needs a LID (--lid_dir, or an export with lid/); "
                                 "or force one adapter with --lang, or use --route base")

    def _posteriors(self, frames: torch.Tensor) -> np.ndarray | None:
        """The window's LID posteriors in adapter order, or None without a LID."""
        if self.lid is None:
            return None
        by_label = predict_proba(self.lid.model, [frames], 1)[0].numpy()
        return np.array([by_label[self.lid.labels.index(lang)] for lang in self.languages])

    def _timeline(self, frames: torch.Tensor, offset: float) -> tuple[np.ndarray, np.ndarray]:
        """Sliding-window LID posteriors (n, adapters) and their centre times (s) from ``offset``."""
        assert self.lid is not None
        win = self.windowing
        posteriors = window_posteriors(frames, self.lid.model, win.win_frames, win.hop_frames).numpy()
        order = [self.lid.labels.index(lang) for lang in self.languages]
        centers = window_centers(len(frames), win.win_frames, win.hop_frames, win.frame_seconds) + offset
        return posteriors[:, order], centers

    def _weights(self, posteriors: np.ndarray | None, routing: RouteOptions) -> torch.Tensor:
        count = len(self.languages)
        if routing.lang is not None:
            row = torch.zeros(count)
            row[self.languages.index(routing.lang)] = 1.0
            return row
        if routing.route == "base":
            return torch.zeros(count)
        assert posteriors is not None
        families = None if routing.families is None else [routing.families[lang] for lang in self.languages]
        return route(torch.from_numpy(posteriors).float()[None], routing.route, routing.tau, routing.top_k,
                     families)[0]

    def transcribe(self, path: Path, routing: RouteOptions | None = None) -> Transcript:
        """One recording (any format ``read_audio`` reads, any rate and channels); unreadable: UserInputError.

        ``routing``: another strategy than the one loaded (the demo decodes base and routed side by side).
        """
        routing = routing or self.routing
        self._check(routing)
        audio = read_audio(str(path), SAMPLE_RATE, str(path))
        spans = split_windows(audio, SAMPLE_RATE, self.windows.window_seconds, self.windows.search_seconds)
        items, weights, routed, durations, posteriors_of = [], {}, {}, {}, {}
        timeline_rows, timeline_times = [], []
        for index, (start, end) in enumerate(spans):
            key = f"w{index:04d}"
            where = f"{path} ({start / SAMPLE_RATE:.2f}-{end / SAMPLE_RATE:.2f} s)"
            feats = logmel(audio[start:end], self.processor.feature_extractor, where=where)
            posteriors = None
            if self.lid is not None:
                frames = base_encoder_frames(self.model, feats)
                posteriors = self._posteriors(frames)
                rows, times = self._timeline(frames, start / SAMPLE_RATE)
                timeline_rows.append(rows)
                timeline_times.append(times)
            row = self._weights(posteriors, routing)
            weights[key], posteriors_of[key] = row, posteriors
            routed[key] = routed_languages(row[None], self.languages)[0]
            durations[key] = (end - start) / SAMPLE_RATE
            items.append((key, feats, batch_key(row, self.languages)))
        opts = dataclasses.replace(self.options, lang_mode="forced" if routing.lang or routing.route != "base"
                                   else "auto")
        hyps = {hyp.utt_id: hyp for hyp in decode_routed(
            self.model, self.processor, items, None, weights, routed, opts, durations, self.safeguards,
            self.cut_layer)}
        segments = []
        for index, (start, end) in enumerate(spans):
            key = f"w{index:04d}"
            posteriors = posteriors_of[key]
            segments.append(Segment(
                start=start / SAMPLE_RATE, end=end / SAMPLE_RATE, text=hyps[key].text, language=hyps[key].lang,
                language_probabilities=None if posteriors is None else probabilities(self.languages, posteriors),
                adapter_weights=probabilities(self.languages, weights[key].tolist())))
        timeline = None
        if timeline_rows:
            rows = np.concatenate(timeline_rows)
            timeline = {"seconds": [round(float(t), 3) for t in np.concatenate(timeline_times)],
                        "probabilities": {lang: [round(float(p), 4) for p in rows[:, column]]
                                          for column, lang in enumerate(self.languages)}}
        return Transcript(str(path), len(audio) / SAMPLE_RATE, routing.name, segments, timeline)


def transcribe_files(
    transcriber: Transcriber, files: Sequence[tuple[Path, str]], write: callable,
) -> list[tuple[Path, str]]:
    """Transcribe each file and ``write(name, transcript)`` it; the (path, error) of the files that failed.

    A file that cannot be read (or decoded) is reported and skipped, never
    stopping the others; any other exception is a bug and propagates.
    """
    from tqdm import tqdm

    failures = []
    for path, name in tqdm(files, desc="transcribe", unit="file"):
        try:
            write(name, transcriber.transcribe(path))
        except UserInputError as err:
            logger.error("%s", err)
            failures.append((path, str(err)))
    return failures
