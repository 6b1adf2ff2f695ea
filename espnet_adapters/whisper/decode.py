"""Batched Whisper decoding of a Kaldi data dir, with Whisper's own safeguards against loops.

The language is forced per utterance from ``utt2lang`` by default: Whisper's own
language detection is unreliable on low-resource languages (it often answers in
the wrong script), and a recipe that knows the language should say so.  With
``lang_mode="auto"`` Whisper detects it, and the detected language is returned
so the recipe can report how often it was right.

Greedy or beam search, no timestamps.  A model that does not understand the
audio (the base model on Indic speech, a weak adapter) tends to loop: the same
word or phrase again and again until the token limit, hundreds of insertions per
utterance.  Three safeguards, each an option of :class:`DecodeOptions` (the
same for every decoder: whisper_decode, route_decode, codeswitch_decode and the
trainer's dev decoding), each off with 0:

1. Token caps.  A flat ``max_new_tokens`` (without one Whisper loops up to its
   448-token limit), and per utterance a cap derived from its duration,
   ``cap_i = min(max_new_tokens, ceil(max_tokens_base + max_tokens_per_second
   * duration_i))``, applied per row inside one batched ``generate``: a logits
   processor forces the end of text in row i (every beam of it) once it has
   generated ``cap_i`` tokens, while the other rows go on.  The tokens counted
   are the transcript's, after Whisper's prompt (start, language, task,
   no-timestamps); a row stopped by either cap is counted as ``capped``.

   The defaults must never cut a correct transcript.  Whisper's byte-level BPE
   is expensive on Indic scripts: measured with Whisper base's tokenizer on the
   sentences of local/sentences/ (a transcript starts with a space), spoken by
   espeak-ng at 170 words per minute (the fastest speaker of conf/synth.yaml;
   raw audio without the corpus' 0.25 s padding, i.e. the shortest durations):

   ======== ======= ============ ========= ========= ============ =========================
   language  n      tokens/char  s/char    tokens/s  tokens/s     max tokens / cap_i
                                           median    max          (defaults 16 + 50/s)
   ======== ======= ============ ========= ========= ============ =========================
   hi        1210   1.06         0.072     14.6      20.2         0.35
   pa        1299   2.01         0.079     25.5      32.3         0.59
   te         522   1.89         0.083     22.7      30.5         0.54
   it         600   0.29         0.061      4.7       6.9         0.12
   ======== ======= ============ ========= ========= ============ =========================

   (With the rough 0.07 s per character estimate, Punjabi is 2.01 / 0.07 = 29
   tokens/s.)  The defaults, ``max_tokens_per_second=50`` and
   ``max_tokens_base=16``, leave every one of those 3631 transcripts at most 59%
   of its cap: speech 1.7 times faster than espeak-ng's fastest speaker (some
   54 tokens/s of Punjabi) is still transcribed whole.
   They bite where a loop is obvious (a 2 s utterance: 116 tokens instead of
   224; English or Italian need fewer than 7 tokens/s) and are a last resort:
   the compression-ratio fallback below is what catches loops.

2. Temperature fallback, as openai-whisper's ``transcribe`` does.  After the
   deterministic pass (``temperatures[0]``, 0: greedy or beam search), each
   hypothesis' compression ratio is computed (:func:`compression_ratio`); the
   rows above ``compression_ratio_threshold`` (openai-whisper's 2.4) are
   decoded again, only they, by sampling at the next temperature of
   ``temperatures``, until they pass or the temperatures run out.  As in
   openai-whisper, a row that never passes keeps its LAST attempt (the sample
   at the highest temperature), not the loop of the first.  Unlike
   openai-whisper (``best_of=5``), one sample is drawn per attempt, and
   sampling never uses beams.  Sampling is reproducible: every row of an
   attempt draws from its own ``torch.Generator`` seeded from ``(seed,
   attempt)``, so the same command gives the same hypotheses, and a row's
   hypothesis does not depend on which other utterances share its batch (nor on
   the number of decoding jobs), beyond the last-digit float differences that
   other batch shapes give every pass.

   The ratio is openai-whisper's ``len(text bytes) / len(zlib.compress(text
   bytes))`` with one byte per character: Whisper's 2.4 was set on English, and
   the 3-byte UTF-8 of Indic scripts (whose lead bytes repeat in every
   character) inflates the byte ratio of correct text (see
   :func:`compression_ratio`).

3. ``no_repeat_ngram_size`` (transformers' n-gram blocking) as a hard guard;
   off (0) by default (openai-whisper has no such rule): it also forbids
   legitimate repetitions ("very very", a repeated number).

With the safeguards off (``max_tokens_per_second=0`` or no durations,
``compression_ratio_threshold`` None or 0, ``no_repeat_ngram_size=0``),
decoding is exactly one ``generate`` call per batch with the flat cap.

The options are a config, ``conf/decode/*.yaml`` (``conf/decode/default.yaml``
lists every key with its default), given to every Whisper decoder and to
train_lora as ``--decode_config``; each key is also a flag that overrides the
file's value when given on the command line (:func:`add_search_arguments`,
:func:`decode_options`).  ``lang_mode`` is not a key: each decoder sets it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import zlib
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import torch
import yaml
from transformers import LogitsProcessor, PreTrainedTokenizerBase, WhisperForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutput

from espnet_adapters.data.kaldi_maps import read_map_lines
from espnet_adapters.utils.cli import UserInputError, str2bool
from espnet_adapters.utils.config import YamlConfig, load_yaml_config
from espnet_adapters.whisper.cross_mask import CrossAttentionFrames
from espnet_adapters.whisper.encoder import ENCODER_SPANS
from espnet_adapters.whisper.script import ScriptLogitsProcessor

logger = logging.getLogger(__name__)

T = TypeVar("T")


DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper's transcribe


LANG_MODES = ("forced", "auto")
# Not read from a decode config: each decoder chooses it (whisper_decode's --lang_mode,
# route_decode's strategy, codeswitch_decode's system); the trainer forces its language.
DECODER_CHOSEN = ("lang_mode",)


@dataclass(frozen=True)
class DecodeOptions(YamlConfig):
    """How to search.  One dataclass so every backend decodes with the same knobs.

    ``conf/decode/*.yaml`` (:meth:`from_yaml`; ``conf/decode/default.yaml``
    lists every key with its default) holds every field but ``lang_mode``,
    which each decoder sets (:data:`DECODER_CHOSEN`).  The safeguards and their
    defaults are described in the module docstring: ``max_tokens_per_second``
    (0 = no duration cap) and ``max_tokens_base``,
    ``compression_ratio_threshold`` (None or 0 = no fallback), ``temperatures``
    (the first is the deterministic pass), ``seed`` (of the fallback's
    sampling), ``no_repeat_ngram_size`` (0 = off).  ``encoder_trim`` (seconds
    of encoder frames after the speech that the decoder sees; None = the whole
    30 s window) and ``encoder_span`` ("window": the encoder runs on Whisper's
    30 s window; "speech": on each utterance's speech + ``encoder_trim``) are
    described in ``espnet_adapters/whisper/inputs.py``: an adapter is decoded
    with the values it was trained with.

    ``as_dict()`` (no file name) is what stats.json and a training signature record.
    """

    beam_size: int = 1
    batch_size: int = 8
    max_new_tokens: int = 224
    lang_mode: str = "forced"  # "forced" (from utt2lang) or "auto" (Whisper detects)
    max_tokens_per_second: float = 50.0
    max_tokens_base: int = 16
    compression_ratio_threshold: float | None = 2.4
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    no_repeat_ngram_size: int = 0
    seed: int = 0
    encoder_trim: float | None = None  # seconds after the speech the decoder sees (None: the 30 s window; inputs.py)
    encoder_span: str = "window"  # what the encoder runs on: "window" (30 s) or "speech" (+ encoder_trim; inputs.py)
    script_constraint: bool = False  # forbid tokens spelling letters of other scripts than the row's language's
    source: str = "<default DecodeOptions>"  # the yaml file, named in error messages

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        if not self.temperatures or any(not t >= 0.0 for t in self.temperatures):
            raise ValueError(f"temperatures must be one or more numbers >= 0, got {self.temperatures}")
        if self.beam_size < 1 or self.batch_size < 1:
            raise ValueError(f"beam_size and batch_size must be >= 1, got {self.beam_size} and {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.lang_mode not in LANG_MODES:
            raise ValueError(f"lang_mode must be one of {', '.join(LANG_MODES)}, got {self.lang_mode!r}")
        if not self.max_tokens_per_second >= 0.0 or self.max_tokens_base < 0:
            raise ValueError(f"max_tokens_per_second and max_tokens_base must be >= 0, got "
                             f"{self.max_tokens_per_second} and {self.max_tokens_base}")
        threshold = self.compression_ratio_threshold
        if threshold is not None and not threshold >= 0.0:
            raise ValueError(f"compression_ratio_threshold must be >= 0 (0 = off), got {threshold}")
        if self.encoder_trim is not None and not self.encoder_trim >= 0.0:
            raise ValueError(f"encoder_trim must be >= 0 seconds or None (the whole window), got {self.encoder_trim}")
        if self.encoder_span not in ENCODER_SPANS:
            raise ValueError(f"encoder_span must be one of {', '.join(ENCODER_SPANS)}, got {self.encoder_span!r}")
        if self.encoder_span == "speech" and self.encoder_trim is None:
            raise ValueError("encoder_span speech runs the encoder on the speech + encoder_trim seconds: "
                             "encoder_trim must be a number of seconds, not none")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> DecodeOptions:
        """The options of a ``conf/decode/*.yaml``: unknown keys, bad values and ``lang_mode`` are errors naming it."""
        opts = load_yaml_config(path, cls)
        with open(path, encoding="utf-8") as handle:  # read and checked above: only the keys are looked at
            given = set(yaml.safe_load(handle) or {})
        chosen = sorted(given & set(DECODER_CHOSEN))
        if chosen:
            raise UserInputError(f"{path}: {', '.join(chosen)} is not a decode config key: each decoder sets it "
                                 "(whisper_decode --lang_mode forced|auto; route_decode and codeswitch_decode per "
                                 "strategy/system)")
        return opts

    @property
    def fallback(self) -> bool:
        """Whether hypotheses are checked for loops and decoded again at higher temperatures."""
        return bool(self.compression_ratio_threshold) and len(self.temperatures) > 1


# --------------------------------------------------------------------------- command-line options

# The options add_search_arguments offers as flags: every yaml key.
SEARCH_OPTIONS = tuple(field.name for field in dataclasses.fields(DecodeOptions)
                       if field.name not in ("source", *DECODER_CHOSEN))
SEED_DEST = "decode_seed"  # the fallback seed's dest: ``--seed`` of a trainer seeds something else


def _seconds_or_none(text: str) -> float | None:
    """``--encoder_trim``: seconds, or none/null (the whole window, overriding a config's value)."""
    if text.lower() in ("none", "null"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or none, got {text!r}") from None


def add_search_arguments(
    parser: argparse.ArgumentParser, *, seed_flag: str = "--seed", skip: Sequence[str] = ()
) -> None:
    """``--decode_config`` and one flag per search option (DecodeOptions), shared by every Whisper decoder.

    Precedence: DecodeOptions' defaults < ``--decode_config FILE`` < a flag given on
    the command line.  The flags default to *absent* (``argparse.SUPPRESS``), so
    :func:`search_overrides` sees only those given.  ``seed_flag`` renames the
    fallback seed's flag (the trainer's ``--seed`` is its own); ``skip`` leaves
    options out (the trainer's dev decoding takes its batch size from the
    training config).
    """
    default = DecodeOptions()
    group = parser.add_argument_group(
        "search (DecodeOptions)",
        "Defaults: --decode_config's values, else the ones shown; a flag given here overrides the config.",
    )
    group.add_argument("--decode_config", type=Path, default=None, metavar="FILE",
                       help="conf/decode/*.yaml: values of the search options below (none: the defaults shown).")
    flags: dict[str, tuple[dict[str, Any], str]] = {
        "beam_size": ({"type": int}, "1 = greedy search."),
        "batch_size": ({"type": int}, "Utterances per generate() call."),
        "max_new_tokens": ({"type": int}, "Cap on generated tokens per utterance."),
        "max_tokens_per_second": (
            {"type": float},
            "Per-utterance cap: min(max_new_tokens, ceil(max_tokens_base + this * seconds)); 0 = off.",
        ),
        "max_tokens_base": ({"type": int}, "Tokens allowed on top of the per-second cap."),
        "compression_ratio_threshold": (
            {"type": float},
            "Decode hypotheses that compress better than this again at the next temperature; 0 = off.",
        ),
        "temperatures": ({"type": float, "nargs": "+", "metavar": "T"},
                         "The first pass (0: greedy/beam) then the fallback's sampling temperatures; the last attempt "
                         "is kept."),
        "no_repeat_ngram_size": ({"type": int}, "Forbid repeating any n-gram of this size; 0 = off."),
        "seed": ({"type": int, "metavar": "SEED"}, "Seed of the fallback's sampling."),
        "script_constraint": ({"type": str2bool, "metavar": "true|false"},
                              "Forbid tokens that spell letters of another script than the language's "
                              "(espnet_adapters/whisper/script.py)."),
        "encoder_span": ({"choices": ENCODER_SPANS},
                         "What the encoder runs on: Whisper's 30 s window, or each utterance's speech + encoder_trim "
                         "(~8x less encoder work; another encoder: an adapter is decoded as it was trained)."),
        "encoder_trim": ({"type": _seconds_or_none, "metavar": "SECONDS"},
                         "Encoder frames the decoder sees: the speech plus this many seconds (none = the whole 30 s "
                         "window); an adapter must be decoded with the value it was trained with."),
    }
    assert set(flags) == set(SEARCH_OPTIONS), "every DecodeOptions field is a flag"
    for name in SEARCH_OPTIONS:
        if name in skip:
            continue
        kwargs, text = flags[name]
        value = getattr(default, name)
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else "none" if value is None else value
        flag, dest = (seed_flag, SEED_DEST) if name == "seed" else (f"--{name}", name)
        group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=f"{text} (default: {shown})", **kwargs)


def search_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The search options given on the command line (:func:`add_search_arguments`), by DecodeOptions field."""
    given = {}
    for name in SEARCH_OPTIONS:
        dest = SEED_DEST if name == "seed" else name
        if hasattr(args, dest):
            value = getattr(args, dest)
            given[name] = tuple(value) if isinstance(value, list) else value
    return given


def load_decode_options(
    config: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None, *, lang_mode: str = "forced"
) -> DecodeOptions:
    """DecodeOptions from a ``conf/decode`` yaml (None: the defaults), then ``overrides``, then ``lang_mode``.

    Invalid values are the user's error, naming the config file.
    """
    opts = DecodeOptions() if config is None else DecodeOptions.from_yaml(config)
    try:
        return dataclasses.replace(opts, **dict(overrides or {}), lang_mode=lang_mode)
    except ValueError as err:
        where = "" if config is None else f" ({config} and the command line)"
        raise UserInputError(f"decoding options{where}: {err}") from err


def decode_options(args: argparse.Namespace, lang_mode: str) -> DecodeOptions:
    """The options of :func:`add_search_arguments`' flags: ``--decode_config``, overridden by the flags given."""
    return load_decode_options(args.decode_config, search_overrides(args), lang_mode=lang_mode)


def search_record(opts: DecodeOptions) -> dict[str, Any]:
    """What a decoder's stats.json records of its search: the options, the config they came from
    (its base name, as ESPnet's inference_tag; None: the defaults), and the options that differ
    from that config (flags and the decoder's lang_mode): ``results`` names decoding variants by
    the last two, never by directory names."""
    from_file = opts.source != DecodeOptions.source
    base = DecodeOptions.from_yaml(opts.source) if from_file else DecodeOptions()
    reference, options = base.as_dict(), opts.as_dict()
    return {
        "decode_config": Path(opts.source).stem if from_file else None,
        "options": options,
        "options_changed": {name: value for name, value in options.items()
                            if value != reference[name] and name != "batch_size"},
    }


SAFEGUARD_COUNTS = ("fallbacks", "fallbacks_unresolved", "capped")


def safeguard_stats() -> dict[str, int]:
    """The counters decode_features increments (``stats=``), all at 0."""
    return dict.fromkeys(SAFEGUARD_COUNTS, 0)


def safeguard_summary(counts: Mapping[str, int]) -> str:
    """One log phrase for :func:`safeguard_stats`' counters."""
    return (f"{counts['fallbacks']} decoded again at a higher temperature ({counts['fallbacks_unresolved']} kept"
            f" above the compression-ratio threshold), {counts['capped']} stopped by a token cap")


@dataclass(frozen=True)
class Hypothesis:
    """One decoded utterance: the text and the language Whisper decoded in."""

    utt_id: str
    text: str
    lang: str


def iter_batches(
    items: Sequence[tuple[str, T, str]], opts: DecodeOptions, durations: Mapping[str, float | None] | None = None,
) -> Iterator[list[tuple[str, T, str]]]:
    """Group ``(utt_id, payload, lang)`` items of one forced language into batches of ``batch_size``.

    The payload (trimmed features, or nothing when encoder outputs are cached)
    is carried along untouched.  With ``durations`` (seconds per utt_id), each
    language's items (all of them with ``lang_mode="auto"``) are sorted by
    duration first (stable; unknown durations last): a batch then holds
    utterances of similar lengths, so a trimmed batch (``encoder_trim``) keeps
    few frames beyond its shorter members' speech, and the batch's
    hypotheses end at similar steps.  Callers write their outputs by key, so
    the order of decoding never shows.
    """
    def by_duration(group: list[tuple[str, T, str]]) -> list[tuple[str, T, str]]:
        if durations is None:
            return group
        return sorted(group, key=lambda item: math.inf if durations.get(item[0]) is None else durations[item[0]])

    if opts.lang_mode == "forced":
        groups: dict[str, list[tuple[str, T, str]]] = {}
        for item in items:
            groups.setdefault(item[2], []).append(item)
        ordered = [item for lang in sorted(groups) for item in by_duration(groups[lang])]
    else:
        ordered = by_duration(list(items))
    batch: list[tuple[str, T, str]] = []
    for item in ordered:
        if batch and (len(batch) == opts.batch_size or (opts.lang_mode == "forced" and batch[0][2] != item[2])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _encoder_kwargs(
    input_features: torch.Tensor | None, encoder_outputs: torch.Tensor | None
) -> dict[str, torch.Tensor | BaseModelOutput]:
    """The one model input given, as ``generate``/``detect_language`` take it.

    Cached encoder outputs go in as ``BaseModelOutput``: Whisper's ``generate``
    then skips the encoder, and decodes exactly as from the features that
    produced them.
    """
    if (input_features is None) == (encoder_outputs is None):
        raise ValueError("give exactly one of input_features or encoder_outputs")
    if input_features is not None:
        return {"input_features": input_features}
    return {"encoder_outputs": BaseModelOutput(last_hidden_state=encoder_outputs)}


def _to_model(model: WhisperForConditionalGeneration, tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(model.device, model.dtype)


@torch.inference_mode()
def detect_languages(
    model: WhisperForConditionalGeneration,
    *,
    input_features: torch.Tensor | None = None,
    encoder_outputs: torch.Tensor | None = None,
    encoder_frames: torch.Tensor | None = None,
) -> list[str]:
    """Whisper's own language identification: one code (``hi``, ``it``) per utterance.

    ``encoder_frames``: each row's valid frames of padded ``encoder_outputs``
    (``encoder_span: speech``), masked in the cross-attention.
    """
    inputs = _encoder_kwargs(_to_model(model, input_features), _to_model(model, encoder_outputs))
    id_to_lang = {idx: code.strip("<|>") for code, idx in model.generation_config.lang_to_id.items()}
    with _frames_context(model, encoder_frames):
        detected = model.detect_language(**inputs)
    return [id_to_lang[int(idx)] for idx in detected.view(-1)]


def _frames_context(model: torch.nn.Module, encoder_frames: torch.Tensor | None) -> AbstractContextManager[Any]:
    """The cross-attention mask of padded encoder outputs (:mod:`cross_mask`), or nothing."""
    return nullcontext() if encoder_frames is None else CrossAttentionFrames(model, encoder_frames).active()


def language_token(tokenizer: PreTrainedTokenizerBase, lang: str) -> int | None:
    """The id of Whisper's language token ``<|lang|>``; None when the tokenizer has none."""
    token = tokenizer.convert_tokens_to_ids(f"<|{lang}|>")
    return token if isinstance(token, int) and token != tokenizer.unk_token_id else None


def forced_languages(
    utt2lang: Path, utts: Sequence[str], tokenizer: PreTrainedTokenizerBase
) -> dict[str, str]:
    """The language each of ``utts`` is decoded in, from ``utt2lang``, checked before any decoding.

    An utterance without a line, or a language Whisper has no token for, is an
    error naming ``utt2lang`` (and the line), not a ``ValueError`` from inside
    ``generate`` after the model is loaded.
    """
    if not utt2lang.is_file():
        raise UserInputError(f"{utt2lang}: missing; it is needed to force the language (or use --lang_mode auto)")
    lines = read_map_lines(utt2lang)
    known: dict[str, bool] = {}
    forced = {}
    for utt in utts:
        if utt not in lines:
            raise UserInputError(f"{utt2lang}: no language for utterance {utt}")
        number, lang = lines[utt]
        if lang not in known:
            known[lang] = language_token(tokenizer, lang) is not None
        if not known[lang]:
            raise UserInputError(f"{utt2lang}:{number}: language {lang!r} of {utt}: Whisper has no token <|{lang}|>")
        forced[utt] = lang
    return forced


def compression_ratio(text: str) -> float:
    """openai-whisper's loop detector, ``len(text bytes) / len(zlib.compress(text bytes))``, one byte per character.

    A looping hypothesis compresses well (``"la la la ..."``: > 2.4), a sentence
    does not (< 2 in every language of local/sentences/).  openai-whisper
    compresses the UTF-8 bytes, with a threshold (2.4) set on English, where a
    character is a byte.  In Devanagari, Gurmukhi or Telugu every character
    takes 3 bytes whose first two repeat throughout the text, so correct text
    compresses like a loop: the byte ratio of 8 consecutive Hindi sentences of
    local/sentences/hi.txt (about 30 s of speech) is 2.68 in the median, 3.14
    at most, and a fallback would replace most correct 30 s Hindi transcripts by
    samples.  Here every character is one byte: ASCII text keeps its own bytes
    (the ratio is exactly openai-whisper's), the other characters get the byte
    values 128-255, then the values ASCII left unused, in order of appearance
    (a relabelling, which keeps every repetition).  Measured on the same
    sentences: single sentences at most 1.35 (hi), 1.21 (pa), 1.27 (te), 1.97
    (it); 8 concatenated at most 1.80 (hi), 1.61 (pa), 1.65 (te), 2.08 (it); a
    phrase of 3 words said 10 times 6.2-6.7.  A text of more than 256 distinct
    characters (no loop has them) falls back to its UTF-8 bytes.
    """
    if not text:
        return 0.0
    if text.isascii():
        data = text.encode("ascii")
    else:
        distinct = dict.fromkeys(text)
        if len(distinct) > 256:
            data = text.encode("utf-8")
        else:
            ascii_used = {char for char in distinct if char.isascii()}
            free = iter([*range(128, 256), *(code for code in range(128) if chr(code) not in ascii_used)])
            byte = {char: ord(char) if char.isascii() else next(free) for char in distinct}
            data = bytes(byte[char] for char in text)
    return len(data) / len(zlib.compress(data))


def token_caps(count: int, opts: DecodeOptions, durations: Sequence[float | None] | None = None) -> list[int]:
    """Each utterance's cap on transcript tokens: ``min(max_new_tokens, ceil(base + per_second * duration))``.

    No durations, a ``None`` duration or ``max_tokens_per_second=0``: the flat
    ``max_new_tokens`` only.
    """
    if durations is None:
        return [opts.max_new_tokens] * count
    if len(durations) != count:
        raise ValueError(f"{len(durations)} durations for {count} utterances")
    caps = []
    for duration in durations:
        if duration is None or opts.max_tokens_per_second <= 0:
            caps.append(opts.max_new_tokens)
        else:
            # round() first: 16 + 50 * 0.3 is 31.000000000000004, and its ceiling 32.
            cap = math.ceil(round(opts.max_tokens_base + opts.max_tokens_per_second * float(duration), 6))
            caps.append(max(0, min(opts.max_new_tokens, cap)))
    return caps


class TokenCapLogitsProcessor(LogitsProcessor):
    """Forces the end of text in row i (all of its beams) once it has generated ``caps[i]`` tokens.

    Whisper's generate tells every processor where its prompt ends
    (``set_begin_index``); without that, the first call's length is taken.
    Rows below their cap are left untouched, so caps that are never reached
    change nothing.  It runs after Whisper's token suppression (which forbids
    the end of text as a first token): a cap of 0 gives an empty transcript.
    """

    def __init__(self, caps: Sequence[int], eos_token_id: int) -> None:
        self.caps = torch.tensor(list(caps), dtype=torch.long)
        self.eos_token_id = eos_token_id
        self.begin_index: int | None = None

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.begin_index is None:
            self.begin_index = input_ids.shape[1]
        generated = input_ids.shape[1] - self.begin_index
        beams, rest = divmod(input_ids.shape[0], len(self.caps))
        if rest:
            raise ValueError(f"{input_ids.shape[0]} rows for {len(self.caps)} token caps")
        reached = (self.caps <= generated).repeat_interleave(beams).to(scores.device)
        if not reached.any():
            return scores
        scores = scores.clone()
        scores[reached] = -math.inf
        scores[reached, self.eos_token_id] = 0.0
        return scores


class SeededSamplingLogitsProcessor(LogitsProcessor):
    """Temperature sampling done by a processor, one seeded ``torch.Generator`` per row.

    generate runs greedy (``do_sample=False``) and this processor, the last
    one, leaves a single finite score per row: the token it sampled from
    ``softmax(scores / temperature)``.  transformers' own sampling draws from
    the global random state, for the whole batch at once; here a row's draws
    depend only on the seed and its own scores.
    """

    def __init__(self, temperature: float, seed: int, rows: int) -> None:
        if not temperature > 0.0:
            raise ValueError(f"sampling needs a temperature > 0, got {temperature}")
        self.temperature = temperature
        self.seed = seed
        self.rows = rows
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != self.rows:
            raise ValueError(f"sampling expects {self.rows} rows (no beams), got {scores.shape[0]}")
        if self.generators is None:
            self.generators = [torch.Generator(scores.device).manual_seed(self.seed) for _ in range(self.rows)]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        picked = torch.cat([torch.multinomial(probs[row], 1, generator=gen) for row, gen in enumerate(self.generators)])
        sampled = torch.full_like(scores, -math.inf)
        sampled.scatter_(1, picked.view(-1, 1), 0.0)
        return sampled


def attempt_seed(seed: int, attempt: int) -> int:
    """The generator seed of fallback ``attempt`` (1 = the first temperature after the deterministic pass)."""
    return (seed * 1_000_003 + attempt) % (2**63)


@dataclass(frozen=True)
class DecodedRow:
    """One utterance's final attempt: its text, transcript tokens and how it was obtained."""

    text: str
    tokens: tuple[int, ...]
    temperature: float
    attempts: int  # 1: the first pass was kept
    compression_ratio: float
    cap: int
    capped: bool  # stopped by its token cap (flat or from the duration)
    passed: bool  # at or below the compression-ratio threshold (True when the check is off)


def _select(inputs: dict[str, torch.Tensor | BaseModelOutput], rows: list[int], total: int) -> dict:
    """The model inputs of some rows of the batch (all of them: the very same objects)."""
    if len(rows) == total:
        return inputs
    index = torch.tensor(rows)
    if "input_features" in inputs:
        features = inputs["input_features"]
        return {"input_features": features[index.to(features.device)]}
    hidden = inputs["encoder_outputs"].last_hidden_state
    return {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden[index.to(hidden.device)])}


def _generate(
    model: WhisperForConditionalGeneration,
    inputs: dict,
    languages: Sequence[str],
    caps: Sequence[int],
    opts: DecodeOptions,
    temperature: float,
    seed: int,
    script: LogitsProcessor | None = None,
) -> tuple[torch.Tensor, int]:
    """One batched generate: deterministic (temperature 0) or sampled; the sequences and the prompt length.

    The processors run in this order: the script constraint (if any), the token cap (it may force
    the end of text, which the script never forbids), the seeded sampling (last: it leaves one token).
    """
    cap = TokenCapLogitsProcessor(caps, model.generation_config.eos_token_id)
    processors: list[LogitsProcessor] = [cap] if script is None else [script, cap]
    if temperature > 0.0:
        processors.append(SeededSamplingLogitsProcessor(temperature, seed, len(languages)))
    extra = {"no_repeat_ngram_size": opts.no_repeat_ngram_size} if opts.no_repeat_ngram_size > 0 else {}
    sequences = model.generate(
        **inputs,
        language=list(languages),
        task="transcribe",
        num_beams=opts.beam_size if temperature == 0.0 else 1,
        do_sample=False,
        max_new_tokens=max(1, *caps),  # a row at the largest cap stops by length, the others by the processor
        return_timestamps=False,
        force_unique_generate_call=True,
        logits_processor=processors,
        **extra,
    )
    if cap.begin_index is None:
        raise RuntimeError("Whisper's generate never told the token-cap processor where its prompt ends")
    return sequences, cap.begin_index


def _transcript_tokens(sequence: torch.Tensor, begin: int, eos_token_id: int) -> tuple[int, ...]:
    """The tokens after the prompt, up to the end of text (padding is the end-of-text token too)."""
    tokens = sequence[begin:].tolist()
    return tuple(tokens[: tokens.index(eos_token_id)] if eos_token_id in tokens else tokens)


# One attempt of the fallback loop: given the batch rows still pending, the temperature and the
# attempt's seed, each row's transcript tokens (after the prompt, before the end of text) and text.
AttemptFn = Callable[[list[int], float, int], list[tuple[tuple[int, ...], str]]]


def run_attempts(caps: Sequence[int], opts: DecodeOptions, attempt: AttemptFn) -> list[DecodedRow]:
    """The temperature fallback over a batch, whatever decodes it (transformers here, CTranslate2 in ct2_decode).

    ``attempt(rows, temperature, seed)`` decodes the batch rows ``rows`` (all of them, then only
    those above the compression-ratio threshold) at ``temperature`` and returns their tokens and
    texts; ``caps`` (one per row, :func:`token_caps`) only serve to count rows as ``capped`` here:
    each backend stops its rows at their caps itself.
    """
    total = len(caps)
    threshold = opts.compression_ratio_threshold if opts.fallback else None
    results: list[DecodedRow | None] = [None] * total
    pending = list(range(total))
    for index, temperature in enumerate(opts.temperatures):
        outputs = attempt(pending, temperature, attempt_seed(opts.seed, index))
        failed = []
        for row, (tokens, text) in zip(pending, outputs, strict=True):
            text = " ".join(text.split())
            ratio = compression_ratio(text)
            passed = threshold is None or ratio <= threshold
            results[row] = DecodedRow(text, tokens, temperature, index + 1, ratio, caps[row],
                                      len(tokens) >= caps[row], passed)
            if not passed:
                failed.append(row)
        pending = failed
        if not pending or threshold is None:
            break
    return [row for row in results if row is not None]


@torch.inference_mode()
def decode_rows(
    model: WhisperForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    input_features: torch.Tensor | None = None,
    encoder_outputs: torch.Tensor | None = None,
    languages: Sequence[str],
    opts: DecodeOptions,
    durations: Sequence[float | None] | None = None,
    row_context: Callable[[list[int]], AbstractContextManager[Any]] | None = None,
    encoder_frames: torch.Tensor | None = None,
) -> list[DecodedRow]:
    """:func:`decode_features` with the details of every row: tokens, temperature, ratio, cap.

    ``row_context(rows)``, when given, is entered around each attempt's ``generate`` with the
    batch rows it decodes (all of them, then only the fallback's): per-row model state, such
    as the routing weights of ``RoutingWeights``, must follow the rows.  ``encoder_frames``
    (one count per row of padded ``encoder_outputs``, ``encoder_span: speech``) masks each
    row's cross-attention to its own frames, following the rows the same way.
    """
    masks = None if encoder_frames is None else CrossAttentionFrames(model, encoder_frames)
    inputs = _encoder_kwargs(_to_model(model, input_features), _to_model(model, encoder_outputs))
    total = len(languages)
    caps = token_caps(total, opts, durations)
    eos = model.generation_config.eos_token_id

    def attempt(pending: list[int], temperature: float, seed: int) -> list[tuple[tuple[int, ...], str]]:
        with (row_context(pending) if row_context is not None else nullcontext(),
              masks.rows(pending) if masks is not None else nullcontext()):
            rows_langs = [languages[row] for row in pending]
            script = (ScriptLogitsProcessor(tokenizer, rows_langs, model.config.vocab_size)
                      if opts.script_constraint else None)
            sequences, begin = _generate(
                model, _select(inputs, pending, total), rows_langs,
                [caps[row] for row in pending], opts, temperature, seed, script,
            )
        texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [(_transcript_tokens(sequence, begin, eos), text) for sequence, text in zip(sequences, texts)]

    return run_attempts(caps, opts, attempt)


def count_rows(rows: Sequence[DecodedRow], stats: MutableMapping[str, int]) -> None:
    """Add a call's counts to ``stats``: fallbacks, unresolved fallbacks, capped."""
    counts = {
        "fallbacks": sum(row.attempts > 1 for row in rows),
        "fallbacks_unresolved": sum(not row.passed for row in rows),
        "capped": sum(row.capped for row in rows),
    }
    for key, value in counts.items():
        stats[key] = stats.get(key, 0) + value


@torch.inference_mode()
def decode_features(
    model: WhisperForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    input_features: torch.Tensor | None = None,
    encoder_outputs: torch.Tensor | None = None,
    languages: Sequence[str],
    opts: DecodeOptions,
    durations: Sequence[float | None] | None = None,
    stats: MutableMapping[str, int] | None = None,
    row_context: Callable[[list[int]], AbstractContextManager[Any]] | None = None,
    encoder_frames: torch.Tensor | None = None,
) -> list[str]:
    """Transcribe a batch in the given languages; whitespace-normalised texts.

    Exactly one of ``input_features`` (B, n_mels, 3000) or ``encoder_outputs``
    (B, 1500 or fewer frames, d_model) is given; either is moved to the model's device and
    dtype; ``encoder_frames``: see :func:`decode_rows`.
    ``durations`` (seconds, one per utterance; None: unknown) set the per-row
    token caps; without them only ``max_new_tokens`` caps.  ``stats``, when
    given, is incremented (:func:`count_rows`): ``fallbacks`` (needed a
    second attempt), ``fallbacks_unresolved`` (above the threshold at
    every temperature: the last attempt is kept), ``capped``.

    One ``generate`` pass per utterance and attempt (``force_unique_generate_call``):
    an utterance is at most one 30 s window.  Without it, Whisper's generate
    seeks on into the window (and decodes it again) whenever the model emits a
    pair of timestamp tokens despite ``return_timestamps=False``, and that second
    pass crashes on ``encoder_outputs`` in transformers 5.23 (it slices
    ``input_features``, which is then None).  The fallback is ours, not
    generate's own ``temperature=(...)`` fallback: that one judges the
    compression of token ids rather than of text, and samples from torch's
    global random state.
    """
    rows = decode_rows(model, tokenizer, input_features=input_features, encoder_outputs=encoder_outputs,
                       languages=languages, opts=opts, durations=durations, row_context=row_context,
                       encoder_frames=encoder_frames)
    if stats is not None:
        count_rows(rows, stats)
    fallbacks = sum(row.attempts > 1 for row in rows)
    if fallbacks:
        logger.debug("%d of %d utterances decoded again at a higher temperature (%d still above %.2f)",
                     fallbacks, len(rows), sum(not row.passed for row in rows), opts.compression_ratio_threshold)
    return [row.text for row in rows]
