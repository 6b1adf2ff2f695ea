"""Whisper decoding with CTranslate2 (``whisper_decode --decode_backend ct2``), by the rules of decode.py.

The model is an export's ``ct2_<quantization>`` dir (espnet_adapters/whisper/export.py:
the adapter merged into the base, checked against ``--whisper_model``) or a
CTranslate2 base model.  It decodes the same log-mel features as the
transformers path (``--whisper_model``'s feature extractor, audio or
``--feats_scp``; cached encoder outputs are transformers' and do not apply),
in the same batches (``iter_batches``), with the same :class:`DecodeOptions`:

- prompt ``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>``, the
  language from utt2lang (forced) or from ``detect_language`` (auto), on the
  same encoder frames as the decoding;
- ``encoder_trim``: the encoder runs on the 30 s window, the decoder is given
  only the frames :func:`kept_frames` keeps (CTranslate2 takes encoder outputs
  of any length);
- the token caps of :func:`token_caps`.  CTranslate2 has one ``max_length`` per
  ``generate`` call (and counts it in its own way: :func:`max_length_for`), so a
  batch is decoded up to its largest cap and each row cut at its own.  With
  greedy search or sampling this is exactly transformers' per-row cap (a row's
  tokens do not depend on how long it may run).  With ``beam_size > 1`` the rows
  cut by their cap are searched again with the search stopped at their cap,
  as transformers ends every beam of a capped row there;
- the temperature fallback of :func:`run_attempts` (the same loop: compression
  ratio, only the failing rows again, sampled at the next temperature from the
  full distribution, the last attempt kept).  The draws are CTranslate2's, so a
  fallback's samples differ from transformers' (the deterministic pass agrees
  up to float rounding), and so does their seeding: CTranslate2 4.8 seeds the
  generator of its worker thread once, at the thread's first draw, from the
  last ``ctranslate2.set_random_seed`` (called with the attempt's seed before
  every sampling call; a later call does not reseed it).  The samples are
  reproducible run to run for the same job (same utterances, batches and
  options), but unlike transformers' per-row generators, a row's sample depends
  on what the job sampled before it;
- ``script_constraint``: the same forbidden tokens (``whisper/script.py``) as
  CTranslate2's ``suppress_tokens`` on top of the model's own (-1), one call per
  language of the batch;
- ``no_repeat_ngram_size`` and ``beam_size`` are CTranslate2's own options;
  Whisper's suppressed tokens (``suppress_tokens`` and, at the first step, the
  blank and the end of text) are CTranslate2's defaults from the converted config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, WhisperProcessor

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodedRow, DecodeOptions, count_rows, run_attempts, token_caps
from espnet_adapters.whisper.export import MANIFEST, CheckedExport, check_export
from espnet_adapters.whisper.inputs import batch_seconds, kept_frames
from espnet_adapters.whisper.model import load_error, resolve_model
from espnet_adapters.whisper.script import script_suppressed_ids

logger = logging.getLogger(__name__)

PROMPT_TAIL = ("<|transcribe|>", "<|notimestamps|>")


def max_length_for(cap: int, prompt_length: int) -> int:
    """A ``max_length`` at which CTranslate2 4.x's Whisper generates at least ``cap`` transcript tokens.

    Measured (``max_length`` is not the number of tokens generated): with a
    4-token prompt, max_length 4, 5, 6, 8, 20, 448 give 1, 2, 3, 4, 10, 224
    tokens.  The rows are cut at their cap afterwards, so more is harmless.
    """
    return max(2 * cap, prompt_length + cap)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, lang: str) -> list[int]:
    """The forced prompt of ``lang`` as token ids; a language Whisper lacks is the user's error."""
    tokens = ["<|startoftranscript|>", f"<|{lang}|>", *PROMPT_TAIL]
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if tokenizer.unk_token_id in ids or any(not isinstance(i, int) for i in ids):
        raise UserInputError(f"language {lang!r} (utt2lang) has no Whisper language token <|{lang}|>")
    return list(ids)


@dataclass
class Ct2Whisper:
    """A CTranslate2 Whisper with the tokenizer and feature extractor of ``--whisper_model``."""

    model: Any  # ctranslate2.models.Whisper
    processor: WhisperProcessor
    export: CheckedExport

    @property
    def backend(self) -> str:
        """The decoding backend as stats.json and the results tables name it: ``ct2-<compute type>``."""
        return f"ct2-{self.model.compute_type}"

    def record(self) -> dict[str, Any]:
        """What stats.json records of the model: backend, compute type, the export it came from."""
        manifest = self.export.manifest
        adapter = None if manifest is None else manifest.get("adapter")
        return {
            "decode_backend": self.backend,
            "ct2_dir": str(self.export.ct2_dir),
            "ct2_compute_type": self.model.compute_type,
            "ct2_quantization": self.export.quantization,
            "export_signature": None if manifest is None else manifest["signature"],
            "adapter_dir": None if adapter is None else adapter.get("dir"),
        }


def open_ct2_whisper(
    ct2_dir: Path, whisper_model: str, *, ngpu: int = 0, num_threads: int = 1, compute_type: str = "default"
) -> Ct2Whisper:
    """Check ``ct2_dir`` against ``whisper_model`` (:func:`check_export`) and load both."""
    import ctranslate2

    export = check_export(ct2_dir, whisper_model)
    source = resolve_model(whisper_model)
    try:
        processor = WhisperProcessor.from_pretrained(source)
    except OSError as err:
        raise load_error(source, err) from err
    device = "cuda" if ngpu > 0 else "cpu"
    try:
        model = ctranslate2.models.Whisper(str(ct2_dir), device=device, compute_type=compute_type,
                                           intra_threads=num_threads)
    except (RuntimeError, ValueError) as err:
        raise UserInputError(f"{ct2_dir}: CTranslate2 cannot load it ({device}, {compute_type}): {err}") from err
    if model.n_mels != processor.feature_extractor.feature_size:
        raise UserInputError(f"{ct2_dir}: the model takes {model.n_mels} mel bins, --whisper_model {whisper_model}'s "
                             f"feature extractor makes {processor.feature_extractor.feature_size}")
    logger.info("loaded %s with CTranslate2 (%s, %s, %d threads)", ct2_dir, device, model.compute_type, num_threads)
    return Ct2Whisper(model, processor, export)


def _storage(array: np.ndarray) -> Any:
    import ctranslate2

    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array, dtype=np.float32))


def encode(
    model: Any, input_features: torch.Tensor, durations: Sequence[float | None], encoder_trim: float | None
) -> np.ndarray:
    """The encoder outputs (B, frames, d_model) of a batch, cut to the frames ``encoder_trim`` keeps."""
    features = _storage(input_features.numpy())
    outputs = np.array(model.encode(features, to_cpu=True))  # a copy: the StorageView's memory is not ours
    return np.ascontiguousarray(outputs[:, : kept_frames(batch_seconds(durations), encoder_trim)])


def cache_encoder_name(ct2: Ct2Whisper) -> str:
    """How an encoder cache names CTranslate2's encoder (claim_cache_dir's ``encoder``): the model's checksum."""
    manifest = ct2.export.manifest or {}
    sha = manifest.get("ct2", {}).get(ct2.export.ct2_dir.name, {}).get("model_bin_sha256", "unknown")
    return f"ctranslate2 {ct2.model.compute_type} model.bin sha256 {sha}"


def cache_encode(ct2: Ct2Whisper) -> Callable[[torch.Tensor], torch.Tensor]:
    """CTranslate2's encoder for the encoder cache (cache_encoder --backend ct2): features (B, n_mels, 3000)
    -> the whole window's outputs (B, 1500, d) as a float32 CPU tensor.

    Only a float32 export of the base model itself qualifies: the cache holds the base
    model's outputs, and an int8 export moves them by ~7% (bench/encoder_cache.py), an
    adapter's export by its update.  A float32 export's outputs are transformers' within
    ~1e-3 (the cache's float16 rounds them more than that)."""
    export = ct2.export
    if export.manifest is None:
        raise UserInputError(f"{export.ct2_dir}: no {MANIFEST} beside it: the encoder cache needs an export_adapter "
                             "export of the base model (checked against --whisper_model)")
    where = export.ct2_dir.parent / MANIFEST
    if export.manifest.get("adapter") is not None:
        raise UserInputError(f"{where}: an export with an adapter merged in; the encoder cache holds the base "
                             "model's outputs: export the base model (export_adapter without --adapter_dir)")
    if export.quantization != "float32" or ct2.model.compute_type != "float32":
        raise UserInputError(f"{where}: {export.quantization} weights, computed in {ct2.model.compute_type}; the "
                             "encoder cache takes float32 only (int8 moves the outputs by ~7%)")

    def whole_window(features: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(encode(ct2.model, features, [None] * len(features), None))

    return whole_window


def detect_languages(model: Any, encoded: np.ndarray) -> list[str]:
    """Whisper's language identification by CTranslate2: one code per row."""
    return [scores[0][0].strip("<|>") for scores in model.detect_language(_storage(encoded))]


def decode_rows(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    encoded: np.ndarray,
    *,
    languages: Sequence[str],
    opts: DecodeOptions,
    durations: Sequence[float | None] | None = None,
) -> list[DecodedRow]:
    """decode.py's ``decode_rows`` with CTranslate2, on encoder outputs from :func:`encode` (module doc)."""
    import ctranslate2

    caps = token_caps(len(languages), opts, durations)
    prompts = [prompt_ids(tokenizer, lang) for lang in languages]

    def generate(rows: Sequence[int], **options: Any) -> dict[int, list[int]]:
        """Each row's tokens, up to the generation's end (not yet cut at the cap); no call for caps of 0."""
        rows = [row for row in rows if caps[row] > 0]
        if not rows:
            return {}
        if opts.script_constraint:  # one call per language: CTranslate2 suppresses tokens per call, not per row
            by_lang: dict[str, list[int]] = {}
            for row in rows:
                by_lang.setdefault(languages[row], []).append(row)
            found: dict[int, list[int]] = {}
            for lang, group in by_lang.items():
                found.update(call(group, suppress_tokens=[-1, *script_suppressed_ids(tokenizer, lang)], **options))
            return found
        return call(rows, **options)

    def call(rows: Sequence[int], **options: Any) -> dict[int, list[int]]:
        results = model.generate(
            _storage(encoded[rows]), [prompts[row] for row in rows],
            max_length=max(max_length_for(caps[row], len(prompts[row])) for row in rows),
            no_repeat_ngram_size=opts.no_repeat_ngram_size, **options,
        )
        return {row: list(result.sequences_ids[0]) for row, result in zip(rows, results, strict=True)}

    def attempt(pending: list[int], temperature: float, seed: int) -> list[tuple[tuple[int, ...], str]]:
        if temperature == 0.0:
            tokens = generate(pending, beam_size=opts.beam_size)
            if opts.beam_size > 1:  # rows cut at their cap: searched again, stopped there (module doc)
                cut = sorted((row for row in tokens if len(tokens[row]) > caps[row]), key=lambda row: caps[row])
                for _, group in groupby(cut, key=lambda row: caps[row]):
                    tokens.update(generate(list(group), beam_size=opts.beam_size))
        else:  # seeding: module doc
            ctranslate2.set_random_seed(seed)
            tokens = generate(pending, beam_size=1, sampling_topk=0, sampling_temperature=temperature)
        outputs = []
        for row in pending:
            kept = tuple(tokens.get(row, ())[: caps[row]])
            outputs.append((kept, tokenizer.decode(list(kept), skip_special_tokens=True)))
        return outputs

    return run_attempts(caps, opts, attempt)


def decode_batch(
    whisper: Ct2Whisper,
    input_features: torch.Tensor,
    *,
    languages: Sequence[str] | None,
    opts: DecodeOptions,
    durations: Sequence[float | None],
    stats: MutableMapping[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """Texts and languages of a batch of features (B, n_mels, 3000); ``languages`` None: detected."""
    encoded = encode(whisper.model, input_features, durations, opts.encoder_trim)
    if languages is None:
        languages = detect_languages(whisper.model, encoded)
    rows = decode_rows(whisper.model, whisper.processor.tokenizer, encoded, languages=languages, opts=opts,
                       durations=durations)
    if stats is not None:
        count_rows(rows, stats)
    return [row.text for row in rows], list(languages)
