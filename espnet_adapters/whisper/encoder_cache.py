"""The frozen Whisper encoder's outputs, computed once per utterance and stored.

LoRA on the decoder only leaves the encoder unchanged, and the encoder is most
of the cost of a training step on 30 s windows (whisper-base on 2 CPU threads,
batch 4: 9.4 s per step with the encoder, 1.19 s on cached outputs).  So the
recipe runs the encoder once, here, and training and dev decoding read its
outputs back.

Layout of a cache directory:
  shard.<JOB>.safetensors  one per job of the recipe's ``run.pl JOB=1:N``; keys are
                           utterance ids, values (1500, d_model) float16 (half the
                           bytes of float32; the decoder's cross-attention does not
                           notice the rounding)
  fingerprint.json         what the outputs were computed from (:func:`encoder_fingerprint`),
                           and ``cut_layer`` for a cache of the states below the top layers

With ``encoder_span: speech`` (``espnet_adapters/whisper/inputs.py``) each
utterance's entry holds only its own frames (its speech + the ``encoder_trim``
margin, encoded alone), so entries differ in length; the span and margin are in
the fingerprint and in ``fingerprint.json`` (absent: the 30 s window).

For an adapter on the top encoder layers (``encoder_top`` in conf/lora) a cache
holds the hidden states after the first ``cut_layer`` layers instead of the
encoder's outputs (:func:`espnet_adapters.whisper.encoder.lower_states`); the
layer is part of the fingerprint, so one kind is never read as the other.

A cache is only valid for the base model and the features it was computed
from, and a stale one would silently train on the wrong inputs: readers check
the fingerprint (in ``fingerprint.json`` and in every shard's metadata) and
refuse a mismatch.  Shards are read lazily through ``safe_open`` (memory-mapped):
a training job touches only the utterances of its batches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from tqdm import tqdm

from espnet_adapters.data.kaldi import ark_file, read_map_lines
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_write
from espnet_adapters.whisper.encoder import lower_states, pad_frames, whole_encoder
from espnet_adapters.whisper.features import stack_features
from espnet_adapters.whisper.model import load_error, resolve_model

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
CACHE_FORMAT = "whisper-encoder-cache/1 float16"  # part of the fingerprint: a format change invalidates
_SHARD = re.compile(r"shard\.(\d+)\.safetensors")
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_MIB = 1 << 20


def shard_path(cache_dir: Path, job: int) -> Path:
    """Where job ``job`` of the recipe writes its shard."""
    return cache_dir / f"shard.{job}.safetensors"


# --------------------------------------------------------------------------- fingerprint


def _file_signature(path: Path) -> str:
    """Size and sha256 of the first and last MiB: weights files are GBs, and any
    re-conversion, re-download or fine-tuning changes both ends or the size."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(_MIB))
        if size > _MIB:
            handle.seek(max(_MIB, size - _MIB))
            digest.update(handle.read(_MIB))
    return f"{path.name} {size} {digest.hexdigest()}"


def _model_dir(model_source: str) -> Path:
    """A local directory holding the model's config and weights (the Hub cache for Hub ids)."""
    source = resolve_model(model_source)
    if Path(source).is_dir():
        return Path(source)
    try:
        return Path(snapshot_download(source, allow_patterns=["config.json", "*.safetensors"]))
    except OSError as err:
        raise load_error(source, err) from err


def model_files(model_source: str) -> tuple[Path, list[Path]]:
    """A model's ``config.json`` and weights files (the Hub cache's for Hub ids); none is an error naming the dir."""
    directory = _model_dir(model_source)
    weights = sorted({p for pattern in _WEIGHT_PATTERNS for p in directory.glob(pattern)})
    if not weights:
        raise UserInputError(f"{directory}: no weights file ({', '.join(_WEIGHT_PATTERNS)})")
    return directory / "config.json", weights


def _model_signature(model_source: str) -> list[str]:
    config, weights = model_files(model_source)
    return [hashlib.sha256(config.read_bytes()).hexdigest(), *(_file_signature(p) for p in weights)]


def _features_signature(feats_scp: Path) -> list[str]:
    """The scp and shape lists, plus size and modification time of every ark they point to.

    Re-dumping the features rewrites the arks (new mtime) even when the scp
    comes out identical, so this catches changed audio that kept its length;
    hashing the arks themselves would cost a full read of the features per job.
    """
    lines = read_map_lines(feats_scp)
    signature = [hashlib.sha256(feats_scp.read_bytes()).hexdigest()]
    shape = feats_scp.with_name("feats_shape")
    if shape.is_file():
        signature.append(hashlib.sha256(shape.read_bytes()).hexdigest())
    arks: set[Path] = set()
    for utt, (number, value) in lines.items():
        path = ark_file(value)
        if path is None:
            raise UserInputError(f"{feats_scp}:{number}: {utt}: expected an ark:offset entry, got {value!r}")
        arks.add(Path(path))
    for ark in sorted(arks):
        try:
            stat = ark.stat()
        except OSError as err:
            raise UserInputError(f"{feats_scp}: cannot read {ark}: {err.strerror}") from err
        signature.append(f"{ark} {stat.st_size} {stat.st_mtime_ns}")
    return signature


def encoder_fingerprint(
    model_source: str, feats_scp: Path, cut_layer: int | None = None, speech_margin: float | None = None,
) -> str:
    """A short hash that changes when the base model, the features or the cached layer change.

    ``model_source`` is a ``--whisper_model`` value; ``feats_scp`` the whole
    set's ``feats.scp`` (every job of one cache must pass the same file and
    split the work with ``--keys``, or their fingerprints differ); ``cut_layer``
    None for the encoder's outputs, L for the states below layer L;
    ``speech_margin`` None for Whisper's 30 s window, M for ``encoder_span:
    speech`` with ``encoder_trim`` M.
    """
    parts = [CACHE_FORMAT, *_model_signature(model_source), *_features_signature(Path(feats_scp))]
    if cut_layer is not None:
        parts.append(f"states below encoder layer {cut_layer}")
    if speech_margin is not None:
        parts.append(f"encoder on the speech + {float(speech_margin):g} s")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def _read_fingerprint(cache_dir: Path) -> dict[str, Any]:
    path = cache_dir / FINGERPRINT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        cut = record.get("cut_layer")
        encoder = record.get("encoder")
        margin = record.get("speech_margin")
        return {"fingerprint": str(record["fingerprint"]), "model": str(record["model"]),
                "cut_layer": None if cut is None else int(cut), "encoder": None if encoder is None else str(encoder),
                "speech_margin": None if margin is None else float(margin)}
    except FileNotFoundError as err:
        raise UserInputError(f"{cache_dir}: no {FINGERPRINT_FILE}; not an encoder cache (run stage 4)") from err
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise UserInputError(f"{path}: not a fingerprint file ({err})") from err


def _stale(cache_dir: Path) -> str:
    return f"{cache_dir}: stale cache: base model or features changed; re-run stage 4 / delete {cache_dir}"


def claim_cache_dir(
    cache_dir: Path, fingerprint: str, model_source: str, cut_layer: int | None = None, encoder: str | None = None,
    speech_margin: float | None = None,
) -> None:
    """Write ``fingerprint.json``, or check that the one there is ours.

    Every job of one cache writes the same content (atomically), so concurrent
    jobs do not race; a different fingerprint means the directory holds another
    model's or other features' outputs, which must not be mixed with ours.
    ``encoder`` names an encoder other than transformers' that computes the
    outputs (cache_encoder --backend ct2: CTranslate2 and its model's checksum);
    it is recorded, so that the training's data digest, which covers this file,
    changes with it, and shards of two encoders are never mixed.
    """
    if (cache_dir / FINGERPRINT_FILE).exists():
        existing = _read_fingerprint(cache_dir)
        if existing["fingerprint"] != fingerprint:
            raise UserInputError(_stale(cache_dir))
        if existing["encoder"] != encoder:
            raise UserInputError(f"{cache_dir}: computed by {existing['encoder'] or 'transformers'}, this job uses "
                                 f"{encoder or 'transformers'}; delete the directory to recompute it")
        return
    with atomic_write(cache_dir / FINGERPRINT_FILE) as handle:
        record: dict[str, object] = {"fingerprint": fingerprint, "model": resolve_model(model_source),
                                     "format": CACHE_FORMAT}
        if cut_layer is not None:
            record["cut_layer"] = cut_layer
        if speech_margin is not None:  # absent: the 30 s window
            record["speech_margin"] = float(speech_margin)
        if encoder is not None:  # absent: transformers (the file of a cache made before stays byte-identical)
            record["encoder"] = encoder
        json.dump(record, handle, indent=2)
        handle.write("\n")


# --------------------------------------------------------------------------- writing


Encode = Callable[[torch.Tensor], torch.Tensor]  # (B, n_mels, 3000) features -> (B, 1500, d) on the CPU


def torch_encode(encoder: torch.nn.Module, cut_layer: int | None = None) -> Encode:
    """transformers' encoder as an :data:`Encode`: its outputs, or with ``cut_layer`` L the states
    after the first L layers."""
    parameter = next(encoder.parameters())

    def encode(features: torch.Tensor) -> torch.Tensor:
        features = features.to(parameter.device, parameter.dtype)
        with torch.inference_mode():
            hidden = whole_encoder(encoder, features) if cut_layer is None else lower_states(encoder, features, cut_layer)
        return hidden.to("cpu")

    return encode


def encode_batches(
    encode: Encode, items: Iterator[tuple[str, np.ndarray]], batch_size: int, progress: tqdm,
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(utt, encoder output)`` for trimmed log-mel ``items``, batch by batch, so :func:`write_shard` streams them.

    ``encode``: :func:`torch_encode`, or CTranslate2's encoder (``ct2_decode.ct2_encode``).
    """
    while batch := list(itertools.islice(items, batch_size)):
        hidden = encode(stack_features([feats for _, feats in batch]))
        progress.update(len(batch))
        yield from zip((utt for utt, _ in batch), hidden)


def write_shard(
    path: Path, outputs: Iterable[tuple[str, torch.Tensor]], keys: Sequence[str],
    shape: tuple[int, int] | Sequence[tuple[int, int]], fingerprint: str,
) -> None:
    """Stream ``(utt, encoder output)`` pairs into a safetensors file, atomically.

    The shape of every tensor is known in advance (one ``shape`` for all, or
    one per key: ``encoder_span: speech``), so the header (which safetensors
    puts first) is written before any output is computed, and a job never holds
    more than one batch of outputs in memory, unlike ``safetensors.torch.save_file``.
    """
    shapes = [tuple(shape)] * len(keys) if shape and isinstance(shape[0], int) else [tuple(one) for one in shape]
    if len(shapes) != len(keys):
        raise ValueError(f"{len(shapes)} shapes for {len(keys)} keys")
    header: dict[str, object] = {"__metadata__": {"fingerprint": fingerprint}}
    offset = 0
    for key, one in zip(keys, shapes):
        nbytes = one[0] * one[1] * 2
        header[key] = {"dtype": "F16", "shape": list(one), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data must start 8-byte aligned
    with atomic_write(path, "wb") as handle:
        _write_body(handle, encoded, outputs, keys, shapes)


def _write_body(
    handle: BinaryIO, header: bytes, outputs: Iterable[tuple[str, torch.Tensor]], keys: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
) -> None:
    handle.write(struct.pack("<Q", len(header)))
    handle.write(header)
    written = 0
    for (utt, output), expected, shape in zip(outputs, keys, shapes, strict=True):
        if utt != expected or tuple(output.shape) != shape:
            raise ValueError(f"shard order/shape mismatch: got {utt} {tuple(output.shape)}, expected {expected} {shape}")
        handle.write(output.detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
        written += 1
    logger.info("wrote %d encoder outputs", written)


# --------------------------------------------------------------------------- reading


class EncoderCache:
    """Read access to a cache directory: ``utt in cache``, ``cache.get_batch(utts)``.

    ``cut_layer`` and ``speech_margin`` say which kind of cache the reader needs (the encoder's
    outputs or the states below a layer; Whisper's 30 s window or ``encoder_span: speech`` with
    that margin): another kind is refused, naming both.

    Raises :class:`UserInputError` naming the directory when its fingerprint is
    not ``expected_fingerprint`` (when given), a shard is missing from the
    numbering 1..N, a shard belongs to another run, or an utterance is in two shards.
    """

    def __init__(
        self, cache_dir: Path, expected_fingerprint: str | None = None, cut_layer: int | None = None,
        speech_margin: float | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        record = _read_fingerprint(self.cache_dir)
        self.fingerprint = record["fingerprint"]
        # None: Whisper's 30 s window; M: encoder_span speech with encoder_trim M (entries of their own lengths)
        self.speech_margin: float | None = record["speech_margin"]
        self.model = record["model"]  # the resolved --whisper_model it was computed with
        # None: the encoder's outputs; L: the states after the first L layers (encoder_top adapters)
        self.cut_layer: int | None = record["cut_layer"]
        if self.cut_layer != cut_layer:
            def kind(layer: int | None) -> str:
                return "the encoder's outputs" if layer is None else f"the states below encoder layer {layer}"
            raise UserInputError(f"{self.cache_dir}: holds {kind(self.cut_layer)}, but {kind(cut_layer)} are needed"
                                 " (encoder_top of the LoRA config; stage 5 caches both kinds)")
        if self.speech_margin != speech_margin:  # before the fingerprint, which covers it: say what differs
            def span(margin: float | None) -> str:
                return "the 30 s window" if margin is None else f"the speech + {margin:g} s"
            raise UserInputError(f"{self.cache_dir}: holds the encoder's outputs on {span(self.speech_margin)}, "
                                 f"this reader needs them on {span(speech_margin)} (encoder_span, encoder_trim of "
                                 "the decode config)")
        if expected_fingerprint is not None and self.fingerprint != expected_fingerprint:
            raise UserInputError(_stale(self.cache_dir))
        shards = {int(m[1]): p for p in self.cache_dir.iterdir() if (m := _SHARD.fullmatch(p.name))}
        missing = sorted(set(range(1, max(shards, default=0) + 1)) - shards.keys())
        if not shards or missing:
            what = f"shards {missing} are missing" if shards else "no shard.<JOB>.safetensors"
            raise UserInputError(f"{self.cache_dir}: {what}; re-run stage 4 / delete {self.cache_dir}")
        self._handles = [safe_open(str(shards[job]), framework="pt") for job in sorted(shards)]
        self._where: dict[str, int] = {}
        for index, handle in enumerate(self._handles):
            if (handle.metadata() or {}).get("fingerprint") != self.fingerprint:
                raise UserInputError(f"{shards[index + 1]}: written for another fingerprint; " + _stale(self.cache_dir))
            for utt in handle.keys():
                if utt in self._where:
                    raise UserInputError(f"{self.cache_dir}: utterance {utt} is in shards {self._where[utt] + 1} and {index + 1}")
                self._where[utt] = index

    def __contains__(self, utt: object) -> bool:
        return utt in self._where

    def __len__(self) -> int:
        return len(self._where)

    def get(self, utt: str) -> torch.Tensor:
        """One utterance's encoder output, (1500, d_model) float32."""
        if utt not in self._where:
            raise UserInputError(f"{self.cache_dir}: utterance {utt} is not cached (re-run stage 4)")
        return self._handles[self._where[utt]].get_tensor(utt).float()

    def frames(self, utt: str) -> int:
        """The frames stored for ``utt`` (1500, or its own count in a cache of ``encoder_span: speech``)."""
        if utt not in self._where:
            raise UserInputError(f"{self.cache_dir}: utterance {utt} is not cached (re-run stage 4)")
        return int(self._handles[self._where[utt]].get_slice(utt).get_shape()[0])

    def get_batch(self, utts: Sequence[str]) -> torch.Tensor:
        """Encoder outputs of a batch, (B, T, d_model) float32: T = 1500, or with a cache of
        ``encoder_span: speech`` the longest row's frames, the shorter ones padded with zeros."""
        return pad_frames([self.get(utt) for utt in utts])
