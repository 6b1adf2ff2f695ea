"""What the decoder's cross-attention sees: the whole 30 s window, or only the speech.

Whisper's encoder always runs on a 30 s window (the audio padded with silence),
and its 1500 output frames (50 per second) are the keys and values of every
decoder layer's cross-attention.  For a 5 s clip, 1250 of them encode padding.
``encoder_trim`` keeps the frames that cover the speech plus a margin: the
cross-attention (and, for a LoRA on ``encoder_attn.v_proj``, its backward)
then costs ~5x less for 5 s clips.  It changes what the decoder sees, so an
adapter must be trained and decoded with the same setting (the recipe passes one
value to both, and the adapter records it), and the base model it is compared
with is decoded with it too.

The encoder itself still runs on the whole window: its outputs for the speech
frames are exactly Whisper's; only the frames the decoder may attend to change.
A batch keeps the frames of its longest utterance, so the shorter ones also see
some of their own padding frames, as in the full window (the decoders sort a
job's utterances by duration before batching: ``iter_batches``).  An utterance
of unknown duration keeps the whole window, and so does its batch.

``encoder_span: speech`` goes further: the encoder itself runs on each
utterance's speech plus the ``encoder_trim`` margin (its log-mel frames cut
there), not on the 30 s window: ~8x less encoder work for 5 s clips, and a
cache of ~1/5 the size.  That is another encoder (the outputs differ from the
window's by ~40%), so the adapters are trained on it (recorded in
``lora_meta.json`` as ``encoder_span``).  Every utterance keeps exactly its own
frames: a batch pads them to its longest, and the decoder's cross-attention
masks the padding (:mod:`espnet_adapters.whisper.cross_mask`), so an
utterance decodes the same in any batch.

The decoders' inputs, the same for whisper_decode, route_decode and (features
only) codeswitch_decode: the audio of a data dir, trimmed log-mel features
(``feats.scp``), or encoder outputs cached by cache_encoder
(:func:`load_payloads`, :func:`open_cache`); a batch's model input
(:func:`batch_inputs`), trimmed when ``encoder_trim`` is set; and the check
that an adapter is decoded with the ``encoder_trim`` it was trained with
(:func:`check_adapter_encoder_trim`, from its ``lora_meta.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from espnet_adapters.data.kaldi import read_map
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.encoder import ENCODER_SPANS, lower_states, pad_frames, upper_outputs, whole_encoder
from espnet_adapters.whisper.encoder_cache import EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import SAMPLE_RATE, iter_audio_logmel, iter_feats_scp, job_keys, stack_features
from espnet_adapters.whisper.lora import META_FILE
from espnet_adapters.whisper.model import adapter_touches_encoder, resolve_model

logger = logging.getLogger(__name__)

FRAMES_PER_SECOND = 50  # Whisper's encoder: 1500 frames for 30 s
MAX_FRAMES = 1500
WINDOW_SECONDS = MAX_FRAMES / FRAMES_PER_SECOND


def kept_frames(durations: Sequence[float], encoder_trim: float | None) -> int:
    """Encoder frames the decoder sees for a batch of ``durations`` (seconds); all if ``encoder_trim`` is None."""
    if encoder_trim is None or not durations:
        return MAX_FRAMES
    if encoder_trim < 0:
        raise ValueError(f"encoder_trim must be >= 0 seconds (or None), got {encoder_trim}")
    frames = math.ceil((max(durations) + encoder_trim) * FRAMES_PER_SECOND)
    return max(1, min(MAX_FRAMES, frames))


def speech_frames(seconds: Sequence[float], margin: float) -> list[int]:
    """Encoder frames of each utterance under ``encoder_span: speech``: its speech + ``margin`` seconds (<= 1500)."""
    if margin < 0:
        raise ValueError(f"the encoder_trim margin must be >= 0 seconds, got {margin}")
    return [max(1, min(MAX_FRAMES, math.ceil((float(second) + margin) * FRAMES_PER_SECOND))) for second in seconds]


def encode_speech(
    encoder: torch.nn.Module | None, frames: Sequence[int], *, features: torch.Tensor | None = None,
    states: torch.Tensor | None = None, cut_layer: int | None = None,
) -> torch.Tensor:
    """Encoder outputs under ``encoder_span: speech``, (B, max frames, d) padded with zeros.

    Each utterance runs alone on its own ``frames`` (from :func:`speech_frames`):
    its log-mel features (B, n_mels, 3000) cut to ``2 * frames`` (the encoder's
    convolutions halve the rate), then conv, positions, layers and final norm.
    ``states`` (B, >= frames, d): what a cache holds instead, the outputs (no
    ``cut_layer``) or the states below ``cut_layer``, whose top layers then run
    here, each utterance on its own frames (the top layers' self-attention
    must not see another utterance's padding).
    """
    if (features is None) == (states is None):
        raise ValueError("encode_speech takes features or states, not both or neither")
    rows = []
    for index, count in enumerate(frames):
        if features is not None:
            assert encoder is not None
            layers = len(encoder.layers) if cut_layer is None else cut_layer
            hidden = lower_states(encoder, features[index : index + 1, :, : 2 * count], layers)
        else:
            assert states is not None
            if states.shape[1] < count:
                raise ValueError(f"cached states hold {states.shape[1]} frames, {count} are needed")
            hidden = states[index : index + 1, :count]
            if cut_layer is None:
                rows.append(hidden[0])
                continue
        assert encoder is not None
        rows.append((encoder.layer_norm(hidden) if cut_layer is None else upper_outputs(encoder, hidden, cut_layer))[0])
    return pad_frames(rows)


def trim_encoder_outputs(
    encoder_outputs: torch.Tensor, durations: Sequence[float], encoder_trim: float | None
) -> torch.Tensor:
    """``encoder_outputs`` (B, 1500, d) cut to the frames ``kept_frames`` keeps (a view, no copy)."""
    return encoder_outputs[:, : kept_frames(durations, encoder_trim)]


def encode(
    encoder: torch.nn.Module, seconds: Sequence[float], encoder_trim: float | None, *,
    features: torch.Tensor | None = None, states: torch.Tensor | None = None, cut_layer: int | None = None,
    span: str = "window",
) -> torch.Tensor:
    """What the decoder cross-attends to for a batch of ``seconds``: encoder outputs, cut by ``encoder_trim``.

    ``span`` "speech": :func:`encode_speech` on :func:`speech_frames` (the
    caller masks the padding with the same frames); "window" as follows.

    From ``features`` (B, n_mels, 3000), or from ``states`` (B, 1500, d) read
    from an encoder cache.  ``cut_layer`` None: the whole encoder runs on the
    window and its outputs are cut (``states`` are then the encoder's
    outputs).  ``cut_layer`` L (an adapter on the top encoder layers,
    :mod:`espnet_adapters.whisper.encoder`): layers below L on the window
    (``states`` are their cached output), the cut, then layers L.. and the
    final norm on the kept frames.
    """
    if (features is None) == (states is None):
        raise ValueError("encode takes features or states, not both or neither")
    if span == "speech":
        if encoder_trim is None:
            raise ValueError("encoder_span speech needs the encoder_trim margin (seconds), not None")
        return encode_speech(encoder, speech_frames(seconds, encoder_trim), features=features, states=states,
                             cut_layer=cut_layer)
    if span != "window":
        raise ValueError(f"encoder_span must be one of {', '.join(ENCODER_SPANS)}, got {span!r}")
    if cut_layer is None:
        outputs = whole_encoder(encoder, features) if states is None else states
        return trim_encoder_outputs(outputs, seconds, encoder_trim)
    lower = lower_states(encoder, features, cut_layer) if states is None else states
    return upper_outputs(encoder, trim_encoder_outputs(lower, seconds, encoder_trim), cut_layer)


# --------------------------------------------------------------------------- what a decoding job reads


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """A Whisper decoding job's inputs, output dir, model and resources (whisper_decode, route_decode)."""
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp and utt2lang.")
    parser.add_argument("--keys", type=Path, default=None, help="Decode only these utterances (first column).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument(
        "--feats_scp", type=Path, default=None,
        help="Trimmed features (dump_feats) instead of audio; with --encoder_cache, what the cache is checked against.",
    )
    parser.add_argument(
        "--encoder_cache", type=Path, default=None,
        help="Cached encoder outputs (cache_encoder) instead of audio; not with an adapter that changes the encoder.",
    )
    parser.add_argument("--ngpu", type=int, default=0, help="0 decodes on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads of this job.")


@dataclass
class Payloads:
    """What :func:`load_payloads` read for the job's utterances."""

    features: dict[str, np.ndarray | None]  # trimmed features; None with an encoder cache
    audio_seconds: float | None  # from the audio or a complete utt2dur, else None
    durations: dict[str, float]  # seconds per utterance, for the token caps and encoder_trim; may lack some
    durations_from: str  # "utt2dur", "frames", "utt2dur+frames" or "none"


def feats_shape_frames(feats_scp: Path | None) -> dict[str, int]:
    """Frames per utterance from the ``feats_shape`` (``utt frames,n_mels``) beside ``feats_scp``, if any."""
    path = None if feats_scp is None else feats_scp.with_name("feats_shape")
    if path is None or not path.is_file():
        return {}
    frames = {}
    for utt, shape in read_map(path).items():
        first = shape.split(",")[0]
        if first.isdigit():
            frames[utt] = int(first)
    return frames


def load_payloads(
    data_dir: Path, extractor: WhisperFeatureExtractor, *, keys: Path | None = None, feats_scp: Path | None = None,
    encoder_cache: Path | None = None,
) -> Payloads:
    """Trimmed features per utterance (``None`` with an encoder cache), the audio seconds, the durations.

    The utterances are those of ``keys`` (a file, first column), else all of
    ``feats_scp`` (features) or of ``data_dir/wav.scp`` (audio, cache).  Audio
    and dumped features take the same path from here on; the seconds come from
    the audio itself, or from ``utt2dur`` when only features are read.

    Each utterance's duration (for the token caps and ``encoder_trim``) is
    utt2dur's, else its trimmed features' frames times the hop (10 ms): the
    features of the audio, of ``feats_scp``, or with ``encoder_cache`` the
    ``feats_shape`` beside ``feats_scp``.  Never the audio's own length, so that
    the three inputs keep decoding identically; the frames hold the STFT's half
    window and one frame of padding, a few hundredths of a second more than the
    audio, on the safe side for a cap.
    """
    utt2dur_path = data_dir / "utt2dur"
    utt2dur = read_map(utt2dur_path) if utt2dur_path.exists() else {}
    if feats_scp is None and encoder_cache is None:
        items = list(iter_audio_logmel(data_dir, keys, extractor))
        utts = [utt for utt, _, _ in items]
        payloads: dict[str, np.ndarray | None] = {utt: feats for utt, feats, _ in items}
        seconds: float | None = sum(length for _, _, length in items)
    else:
        if encoder_cache is None:
            assert feats_scp is not None
            utts = job_keys(keys, read_map(feats_scp), feats_scp)
            payloads = dict(iter_feats_scp(feats_scp, utts))
        else:
            utts = job_keys(keys, read_map(data_dir / "wav.scp"), data_dir / "wav.scp")
            payloads = dict.fromkeys(utts)
        seconds = sum(float(utt2dur[utt]) for utt in utts) if utt2dur.keys() >= set(utts) else None
    frames = {utt: feats.shape[0] for utt, feats in payloads.items() if feats is not None}
    if encoder_cache is not None:
        frames = feats_shape_frames(feats_scp)
    hop_seconds = extractor.hop_length / SAMPLE_RATE
    durations: dict[str, float] = {}
    sources: list[str] = []
    for utt in utts:
        if utt in utt2dur:
            durations[utt], source = float(utt2dur[utt]), "utt2dur"
        elif utt in frames:
            durations[utt], source = frames[utt] * hop_seconds, "frames"
        else:
            continue
        if source not in sources:
            sources.append(source)
    if len(durations) < len(utts):
        logger.warning("%d of %d utterances have no duration (no utt2dur, no feats_shape): only --max_new_tokens"
                       " caps them, and their batches see the whole encoder window", len(utts) - len(durations),
                       len(utts))
    return Payloads(payloads, seconds, durations, "+".join(sorted(sources, reverse=True)) or "none")


def input_kind(feats_scp: Path | None, encoder_cache: Path | None) -> str:
    """What was decoded from, for stats.json."""
    return "encoder_cache" if encoder_cache is not None else "feats_scp" if feats_scp is not None else "audio"


def open_cache(
    encoder_cache: Path, whisper_model: str, keys: Sequence[str], adapter_dirs: Sequence[Path],
    feats_scp: Path | None = None, speech_margin: float | None = None,
) -> EncoderCache:
    """The encoder cache, checked against the model, the adapters, the span (``speech_margin``:
    None for the 30 s window, the ``encoder_trim`` of ``encoder_span: speech``) and (given
    ``feats_scp``) the features."""
    for adapter_dir in adapter_dirs:
        if adapter_touches_encoder(adapter_dir):
            raise UserInputError(
                f"{adapter_dir}: the adapter changes encoder weights, so cached encoder outputs"
                f" ({encoder_cache}) do not apply; decode from audio or --feats_scp"
            )
    expected = None if feats_scp is None else encoder_fingerprint(whisper_model, feats_scp, None, speech_margin)
    cache = EncoderCache(encoder_cache, expected, speech_margin=speech_margin)
    if cache.model != resolve_model(whisper_model):
        raise UserInputError(
            f"{encoder_cache}: computed with {cache.model}, not {resolve_model(whisper_model)};"
            f" re-run stage 4 / delete {encoder_cache}"
        )
    for utt in keys:
        if utt not in cache:
            raise UserInputError(f"{encoder_cache}: utterance {utt} is not cached (re-run stage 4)")
    return cache


@torch.inference_mode()
def batch_inputs(
    batch: Sequence[tuple[str, np.ndarray | None, str]],
    cache: EncoderCache | None,
    *,
    model: torch.nn.Module | None = None,
    durations: Sequence[float | None] | None = None,
    encoder_trim: float | None = None,
    cut_layer: int | None = None,
    encoder_span: str = "window",
) -> dict[str, torch.Tensor]:
    """The model input of a batch of ``iter_batches`` items, as ``decode_features`` takes it.

    ``encoder_span`` "speech": the encoder outputs of every utterance on its own
    speech + ``encoder_trim`` (:func:`encode_speech`, from the features or a
    cache of that span), padded, and ``encoder_frames``, each row's count, for
    the decoder's cross-attention mask.

    Without ``encoder_trim``: the stacked features, or the cached encoder
    outputs.  With it: encoder outputs either way (from the cache, or from
    ``model``'s encoder run on the features, with whatever adapter or routing
    weights are active), cut by :func:`trim_encoder_outputs` to the speech of
    the batch's longest utterance (``durations``, seconds, one per item; an
    unknown one counts as the whole window) plus ``encoder_trim`` seconds.
    Whisper's own language detection (``detect_languages``) then reads the
    same trimmed frames as the decoding.  ``cut_layer`` (the adapters'
    :func:`adapter_cut_layer`): the cut is made before that encoder layer
    (:func:`encode`); without ``encoder_trim`` nothing is cut and it changes nothing.
    """
    if encoder_span == "speech":
        if durations is None or len(durations) != len(batch) or encoder_trim is None:
            raise ValueError("encoder_span speech needs the encoder_trim margin and one duration per utterance")
        seconds = batch_seconds(durations)
        frames = speech_frames(seconds, encoder_trim)
        if cache is not None:
            check_cached_frames(cache, [utt for utt, _, _ in batch], frames)
            states = cache.get_batch([utt for utt, _, _ in batch])
            encoder = model.get_encoder() if model is not None else None
            if cut_layer is not None and encoder is None:
                raise ValueError("an encoder cut layer needs the model, to run the top layers")
            outputs = encode_speech(encoder, frames, states=states, cut_layer=cut_layer)
        else:
            if model is None:
                raise ValueError("encoder_span speech on features needs the model, to run its encoder")
            features = stack_features([feats for _, feats, _ in batch]).to(model.device, model.dtype)
            outputs = encode_speech(model.get_encoder(), frames, features=features, cut_layer=cut_layer)
        return {"encoder_outputs": outputs, "encoder_frames": torch.tensor(frames)}
    if encoder_trim is None:
        if cache is None:
            return {"input_features": stack_features([feats for _, feats, _ in batch])}
        return {"encoder_outputs": cache.get_batch([utt for utt, _, _ in batch])}
    if durations is None or len(durations) != len(batch):
        raise ValueError("encoder_trim needs one duration (or None) per utterance of the batch")
    if cache is not None:
        if cut_layer is not None:
            raise ValueError("an adapter with an encoder cut layer changes the encoder: no encoder cache")
        outputs = cache.get_batch([utt for utt, _, _ in batch])
        return {"encoder_outputs": trim_encoder_outputs(outputs, batch_seconds(durations), encoder_trim)}
    if model is None:
        raise ValueError("encoder_trim on features needs the model, to run its encoder")
    features = stack_features([feats for _, feats, _ in batch]).to(model.device, model.dtype)
    return {"encoder_outputs": encode(model.get_encoder(), batch_seconds(durations), encoder_trim,
                                      features=features, cut_layer=cut_layer)}


def check_cached_frames(cache: EncoderCache, utts: Sequence[str], frames: Sequence[int]) -> None:
    """A cache of ``encoder_span: speech`` must hold exactly the frames the durations give (else another
    duration or margin made it: its outputs would be those of another encoder input)."""
    for utt, count in zip(utts, frames):
        stored = cache.frames(utt)
        if stored != count:
            raise UserInputError(f"{cache.cache_dir}: {utt} has {stored} encoder frames cached, its duration and "
                                 f"encoder_trim give {count}: the cache was made from other durations (utt2dur) or "
                                 "another margin; re-run stage 5")


def batch_seconds(durations: Sequence[float | None]) -> list[float]:
    """The seconds of a batch's utterances that ``encoder_trim`` keeps frames for: an unknown one is the window."""
    return [WINDOW_SECONDS if duration is None else float(duration) for duration in durations]


# --------------------------------------------------------------------------- adapters and encoder_trim


def adapter_encoder_trim(adapter_dir: Path) -> float | None:
    """The ``encoder_trim`` an adapter was trained with: its ``lora_meta.json``'s, None without the key or file."""
    path = Path(adapter_dir) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserInputError(f"{path}: unreadable adapter metadata: {err}") from err
    value = meta.get("encoder_trim") if isinstance(meta, dict) else None
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserInputError(f"{path}: encoder_trim must be a number of seconds or null, got {value!r}")
    return None if value is None else float(value)


def adapter_cut_layer(adapter_dirs: Sequence[Path]) -> int | None:
    """The encoder layer before which the adapters' frames are cut (``encoder_cut_layer`` of their lora_meta.json).

    None for adapters on the decoder (or the whole encoder): the cut follows the
    encoder.  Adapters decoded together (routing) must agree.
    """
    layers: dict[Path, int | None] = {}
    for adapter_dir in adapter_dirs:
        path = Path(adapter_dir) / META_FILE
        meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        value = meta.get("encoder_cut_layer") if isinstance(meta, dict) else None
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserInputError(f"{path}: encoder_cut_layer must be a layer number >= 1 or null, got {value!r}")
        layers[Path(adapter_dir)] = value
    if len(set(layers.values())) > 1:
        named = ", ".join(f"{d} ({v})" for d, v in layers.items())
        raise UserInputError(f"adapters with different encoder cut layers cannot be decoded together: {named}")
    return next(iter(layers.values()), None)


def _trim_text(value: float | None) -> str:
    return "none (the whole 30 s window)" if value is None else f"{value:g} s"


def speech_margin(opts: Any) -> float | None:
    """The ``encoder_trim`` of DecodeOptions ``opts`` with ``encoder_span: speech``; None for the 30 s window."""
    return opts.encoder_trim if opts.encoder_span == "speech" else None


def adapter_encoder_span(adapter_dir: Path) -> str:
    """The ``encoder_span`` an adapter was trained with: its ``lora_meta.json``'s, "window" without the key."""
    path = Path(adapter_dir) / META_FILE
    meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    value = meta.get("encoder_span", "window") if isinstance(meta, dict) else "window"
    if value not in ENCODER_SPANS:
        raise UserInputError(f"{path}: encoder_span must be one of {', '.join(ENCODER_SPANS)}, got {value!r}")
    return value


def check_adapter_encoder_trim(
    adapter_dirs: Sequence[Path], encoder_trim: float | None, encoder_span: str = "window",
) -> int | None:
    """Refuse an adapter trained with another ``encoder_trim`` or ``encoder_span`` than the decoding's
    (it saw other encoder frames, or another encoder).

    Returns the adapters' encoder cut layer (:func:`adapter_cut_layer`), which
    the decoding passes on to :func:`batch_inputs`.
    """
    for adapter_dir in adapter_dirs:
        trained_span = adapter_encoder_span(adapter_dir)
        if trained_span != encoder_span:
            raise UserInputError(
                f"{adapter_dir}: the adapter was trained with encoder_span {trained_span} ({META_FILE}), but this "
                f"decoding uses {encoder_span}; decode it as it was trained (--encoder_span {trained_span}, or a "
                f"--decode_config with encoder_span: {trained_span})"
            )
        trained = adapter_encoder_trim(adapter_dir)
        if trained != (None if encoder_trim is None else float(encoder_trim)):
            flag = "none" if trained is None else f"{trained:g}"
            raise UserInputError(
                f"{adapter_dir}: the adapter was trained with encoder_trim {_trim_text(trained)} ({META_FILE}), "
                f"but this decoding uses {_trim_text(encoder_trim)}; decode it as it was trained "
                f"(--encoder_trim {flag}, or a --decode_config with encoder_trim: "
                f"{'null' if trained is None else flag})"
            )
    return adapter_cut_layer(adapter_dirs)
