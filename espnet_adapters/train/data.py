"""Training data for Whisper LoRA: labels from a Kaldi dir, features or cached encoder outputs.

Each utterance of ``text`` becomes the token sequence Whisper decodes in
transcription mode::

    <|startoftranscript|> <|hi|> <|transcribe|> <|notimestamps|>  text  <|endoftext|>

The decoder input is that sequence without its last token, the labels are it
without its first (teacher forcing); padding is ``<|endoftext|>`` in the input
and -100 (ignored by the loss) in the labels.  The text is encoded with a
leading space, as Whisper's own transcripts begin, so the adapter does not
have to unlearn that -- unless the space stays a token of its own (it merges
with a first Latin or Devanagari letter, not with Gurmukhi or Telugu ones):
Whisper's decoding suppresses a bare space as the first token
(``begin_suppress_tokens``), so an adapter taught to begin with it emits
something else there, a junk token glued to every first word.  The decoder has ``max_target_positions`` (448)
positions: a longer label is a data error reported by file and line, never
truncated (a cut transcript teaches the model to stop mid-sentence).

The acoustic side is either the trimmed log-mel ``feats.scp`` dumped by the
recipe (the encoder runs at each step) or an encoder cache (decoder-only
adapters: the encoder's outputs never change, so they are computed once).

Batches are length-bucketed over label lengths (the decoder's cost and the
padding waste grow with them; the encoder input is always 30 s), in an order
that depends only on the seed and the epoch, so that a resumed run can skip to
the exact batch it stopped at.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import kaldiio
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from espnet_adapters.data.kaldi import ark_file, read_map_lines
from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.encoder_cache import FINGERPRINT_FILE, EncoderCache, encoder_fingerprint
from espnet_adapters.whisper.features import stack_features
from espnet_adapters.whisper.inputs import check_cached_frames, speech_frames

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels the loss skips (torch's CrossEntropyLoss default)
# An ark path with its byte offset and an optional slice, as kaldiio writes it.

# (frames, n_mels) trimmed log-mel -> augmented copy; SpecAugment in the trainer.
Augment = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Example:
    """One utterance: id, reference text and the full token sequence (SOT ... EOT)."""

    utt_id: str
    text: str
    tokens: tuple[int, ...]
    seconds: float  # duration of the speech (trimmed log-mel frames / 100): decoding's token cap


@dataclass
class Batch:
    """Model inputs of one batch; exactly one of ``input_features``/``encoder_outputs`` is set."""

    utt_ids: list[str]
    texts: list[str]
    decoder_input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX on padding
    durations: list[float]  # seconds of each utterance
    input_features: torch.Tensor | None = None  # (B, n_mels, 3000)
    encoder_outputs: torch.Tensor | None = None  # (B, 1500, d_model)

    @property
    def num_tokens(self) -> int:
        """Label tokens the loss is averaged over."""
        return int((self.labels != IGNORE_INDEX).sum())


def prefix_tokens(tokenizer: PreTrainedTokenizerBase, lang: str) -> list[int]:
    """``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`` as ids."""
    names = ["<|startoftranscript|>", f"<|{lang}|>", "<|transcribe|>", "<|notimestamps|>"]
    ids = tokenizer.convert_tokens_to_ids(names)
    if None in ids or (tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids):
        raise UserInputError(f"--lang {lang}: the Whisper tokenizer has no language token <|{lang}|>")
    return list(ids)


def _ark_problem(feats_scp: Path) -> str | None:
    """The first ``feats.scp:LINE`` whose ark file is missing (kaldiio would fail mid-training)."""
    checked: dict[str, bool] = {}
    for key, (line, value) in read_map_lines(feats_scp).items():
        path = ark_file(value) or value
        if path not in checked:
            checked[path] = Path(path).is_file()
        if not checked[path]:
            return f"{feats_scp}:{line}: {key}: ark file {path} does not exist"
    return None


class FeatureSource:
    """Trimmed log-mel features from a kaldiio ``feats.scp``; the encoder runs on them."""

    def __init__(self, feats_scp: Path) -> None:
        problem = _ark_problem(feats_scp)
        if problem is not None:
            raise UserInputError(problem)
        self.path = feats_scp
        self._feats = kaldiio.load_scp(str(feats_scp))

    def keys(self) -> set[str]:
        return set(self._feats.keys())

    def fill(self, batch: Batch, augment: Augment | None) -> None:
        feats = [np.asarray(self._feats[utt]) for utt in batch.utt_ids]
        if augment is not None:
            feats = [augment(f) for f in feats]
        batch.input_features = stack_features(feats)


class CacheSource:
    """Encoder outputs computed once by the recipe; only for adapters that leave the encoder alone."""

    def __init__(
        self, cache_dir: Path, model_source: str, feats_scp: Path, cut_layer: int | None = None,
        speech_margin: float | None = None,
    ) -> None:
        self.path = cache_dir
        self.cut_layer = cut_layer  # None: the encoder's outputs; L: the states below layer L (encoder_top)
        self.speech_margin = speech_margin  # None: the 30 s window; M: encoder_span speech, encoder_trim M
        expected = encoder_fingerprint(model_source, feats_scp, cut_layer, speech_margin)
        self._cache = EncoderCache(cache_dir, expected, cut_layer, speech_margin)

    def check_frames(self, seconds: Mapping[str, float]) -> None:
        """With ``encoder_span: speech``: every entry holds the frames its duration gives (else stage 5 used others)."""
        if self.speech_margin is None:
            return
        utts = list(seconds)
        check_cached_frames(self._cache, utts, speech_frames([seconds[utt] for utt in utts], self.speech_margin))

    def keys_missing(self, utts: Sequence[str]) -> list[str]:
        return [utt for utt in utts if utt not in self._cache]

    def fill(self, batch: Batch, augment: Augment | None) -> None:
        if augment is not None:
            raise ValueError("SpecAugment needs features; encoder outputs are cached")
        batch.encoder_outputs = self._cache.get_batch(batch.utt_ids)


class AsrDataset:
    """The examples of one Kaldi dir and where their acoustics come from."""

    def __init__(self, examples: list[Example], source: FeatureSource | CacheSource, pad_id: int) -> None:
        self.examples = examples
        self.source = source
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def label_lengths(self) -> list[int]:
        return [len(ex.tokens) - 1 for ex in self.examples]

    def collate(self, indices: Sequence[int], augment: Augment | None = None) -> Batch:
        """The batch of ``indices``, padded to its longest label."""
        examples = [self.examples[i] for i in indices]
        width = max(len(ex.tokens) - 1 for ex in examples)
        inputs = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for row, ex in enumerate(examples):
            tokens = torch.tensor(ex.tokens, dtype=torch.long)
            inputs[row, : len(tokens) - 1] = tokens[:-1]
            labels[row, : len(tokens) - 1] = tokens[1:]
        batch = Batch([ex.utt_id for ex in examples], [ex.text for ex in examples], inputs, labels,
                      [ex.seconds for ex in examples])
        self.source.fill(batch, augment)
        return batch


def load_dataset(
    data_dir: Path,
    *,
    lang: str,
    tokenizer: PreTrainedTokenizerBase,
    max_target_positions: int,
    feats_scp: Path,
    encoder_cache: Path | None = None,
    model_source: str = "",
    cut_layer: int | None = None,
    speech_margin: float | None = None,
) -> AsrDataset:
    """Read ``text`` and ``utt2lang`` of ``data_dir`` and check every utterance has acoustics.

    Raises :class:`UserInputError` naming the file (and line) for: an empty set,
    an utterance of another language than ``lang``, a label longer than the
    decoder's positions, an utterance missing from ``feats.scp`` or the cache,
    and a ``feats.scp`` entry whose ark file does not exist.  ``cut_layer``:
    the cache holds the states below that encoder layer (``encoder_top``);
    ``speech_margin``: a cache of ``encoder_span: speech`` with that ``encoder_trim``.
    """
    text_path, lang_path = data_dir / "text", data_dir / "utt2lang"
    texts = read_map_lines(text_path)
    if not texts:
        raise UserInputError(f"{text_path}: no utterances: cannot train or evaluate on an empty set")
    langs = read_map_lines(lang_path)
    for utt, (line, utt_lang) in langs.items():
        if utt in texts and utt_lang != lang:
            raise UserInputError(f"{lang_path}:{line}: {utt} is {utt_lang!r}, but this adapter is for --lang {lang}")
    missing = [utt for utt in texts if utt not in langs]
    if missing:
        raise UserInputError(f"{lang_path}: no language for {len(missing)} utterance(s) of {text_path}, e.g. {missing[0]}")

    if encoder_cache is None:
        source: FeatureSource | CacheSource = FeatureSource(feats_scp)
        absent = [utt for utt in texts if utt not in source.keys()]
        where = str(feats_scp)
    else:
        source = CacheSource(encoder_cache, model_source, feats_scp, cut_layer, speech_margin)
        absent = source.keys_missing(list(texts))
        where = f"encoder cache {encoder_cache}"
    if absent:
        raise UserInputError(f"{where}: no entry for {len(absent)} utterance(s) of {text_path}, e.g. {absent[0]}")
    seconds = utterance_seconds(data_dir, feats_scp, list(texts))
    if isinstance(source, CacheSource):
        source.check_frames(seconds)

    prefix = prefix_tokens(tokenizer, lang)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    examples = []
    for utt, (line, text) in texts.items():
        body = label_text_tokens(tokenizer, text)
        tokens = (*prefix, *body, eot)
        if len(tokens) - 1 > max_target_positions:
            raise UserInputError(
                f"{text_path}:{line}: {utt}: label of {len(tokens) - 1} tokens is longer than the decoder's"
                f" {max_target_positions} positions; split the utterance or drop it"
            )
        examples.append(Example(utt, text, tokens, seconds[utt]))
    logger.info("%s: %d utterances, labels %d-%d tokens", data_dir, len(examples),
                min(len(e.tokens) for e in examples) - 1, max(len(e.tokens) for e in examples) - 1)
    return AsrDataset(examples, source, pad_id=eot)


def label_text_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The tokens of ``text`` in a label: with Whisper's leading space where it merges with the
    first letter, without it where it would be a token of its own (see the module docstring)."""
    spaced = tokenizer.encode(" " + text, add_special_tokens=False)
    space = tokenizer.encode(" ", add_special_tokens=False)
    if spaced[: len(space)] == space:
        return tokenizer.encode(text, add_special_tokens=False)
    return spaced


def utterance_seconds(data_dir: Path, feats_scp: Path, utts: Sequence[str]) -> dict[str, float]:
    """Seconds of each utterance, by the decoders' rule (``whisper/inputs.py``: the token caps
    and ``encoder_trim`` must see the same durations in training and in decoding).

    The data dir's ``utt2dur`` where it has the utterance, else its trimmed log-mel
    frames (100 per second) from ``feats_shape`` beside the scp (stage 4 writes it:
    ``utt frames,n_mels``), else from the features themselves.
    """
    seconds: dict[str, float] = {}
    utt2dur = data_dir / "utt2dur"
    if utt2dur.is_file():
        for utt, (line, value) in read_map_lines(utt2dur).items():
            try:
                seconds[utt] = float(value)
            except ValueError as err:
                raise UserInputError(f"{utt2dur}:{line}: {utt}: expected seconds, got {value!r}") from err
    rest = [utt for utt in utts if utt not in seconds]
    if rest:
        seconds.update(_frame_seconds(feats_scp, rest))
    return {utt: seconds[utt] for utt in utts}


def _frame_seconds(feats_scp: Path, utts: Sequence[str]) -> dict[str, float]:
    shape = feats_scp.with_name("feats_shape")
    frames: dict[str, int] = {}
    if shape.is_file():
        for utt, (line, value) in read_map_lines(shape).items():
            try:
                frames[utt] = int(value.split(",")[0])
            except ValueError as err:
                raise UserInputError(f"{shape}:{line}: {utt}: expected 'frames,n_mels', got {value!r}") from err
    missing = [utt for utt in utts if utt not in frames]
    if missing:
        feats = kaldiio.load_scp(str(feats_scp))
        frames.update({utt: int(np.asarray(feats[utt]).shape[0]) for utt in missing})
    return {utt: frames[utt] / 100.0 for utt in utts}


def dataset_digest(data_dir: Path, feats_scp: Path, encoder_cache: Path | None = None) -> str:
    """A sha256 of what a training or dev set *is*: its transcripts, languages and features.

    The Kaldi dir's ``text`` and ``utt2lang``, the ``feats.scp`` and every byte of
    the arks it points to (log-mel features are small: ~40 MB for 240 utterances),
    and the encoder cache's fingerprint (which covers the model and the features).
    Paths are left out: the same paths with other data must not look like the same run.
    """
    digest = hashlib.sha256()
    for path in (data_dir / "text", data_dir / "utt2lang", feats_scp):
        try:
            digest.update(path.read_bytes())
        except OSError as err:
            raise UserInputError(f"{path}: cannot read ({err.strerror})") from err
    problem = _ark_problem(feats_scp)
    if problem is not None:
        raise UserInputError(problem)
    arks = sorted({ark for _, value in read_map_lines(feats_scp).values() if (ark := ark_file(value))})
    for ark in arks:
        with open(ark, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    if encoder_cache is not None:
        try:
            digest.update((encoder_cache / FINGERPRINT_FILE).read_bytes())
        except OSError as err:
            raise UserInputError(f"{encoder_cache}: no {FINGERPRINT_FILE}; not an encoder cache (run stage 5)") from err
    return digest.hexdigest()


class BucketBatchSampler:
    """Length-bucketed batches whose order depends only on (seed, epoch).

    Each epoch: shuffle the utterances, sort them by label length (the shuffle
    breaks ties randomly), cut the sorted list into batches of ``batch_size``
    and shuffle the batches.  Utterances of similar length share a batch, so
    little padding is computed, while every batch is still seen in random order.
    A resumed run rebuilds the epoch's list and skips to the saved position.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        if not lengths:
            raise ValueError("no utterances to batch")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}/{epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng.shuffle(batches)
        return batches
