"""Whisper's decoding safeguards (espnet_adapters/whisper/decode.py) on a tiny random Whisper.

Per-row token caps from durations (greedy and beam), the compression-ratio
temperature fallback (deterministic, only the failed rows, the last attempt
kept), n-gram blocking, and with everything off exactly the plain generate
call decoding used before the safeguards.  The tiny model has Whisper base's
vocabulary, special tokens and generation config but d_model 64 and 2+2 layers.
A "looping" variant has a decoder whose output is a constant vector: greedy
search repeats one token forever, while sampling at a temperature > 0 draws
from a nearly flat distribution (or, with a large scale, loops as well).
"""

from __future__ import annotations

import json
import math
import statistics
import zlib
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

from espnet_adapters.whisper.decode import (
    DecodeOptions,
    compression_ratio,
    decode_features,
    decode_rows,
    token_caps,
)

REPO = Path(__file__).resolve().parents[2]
SENTENCES = REPO / "local" / "sentences"
OFF = {"max_tokens_per_second": 0.0, "compression_ratio_threshold": None, "no_repeat_ngram_size": 0}
LOOP_TOKEN_TEXT = " la"


def tiny_whisper(base_dir: Path, seed: int = 0) -> WhisperForConditionalGeneration:
    config = WhisperConfig.from_pretrained(base_dir)
    config.update({
        "d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "init_std": 0.2,
    })
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(base_dir)
    return model


def looping_whisper(base_dir: Path, token: int, scale: float) -> WhisperForConditionalGeneration:
    """The decoder's last hidden state is ``scale * embedding[token]`` whatever the input.

    The logits (tied output layer) are then the same at every step, with
    ``token`` on top: greedy and beam search repeat it; at scale 0.3 the
    softmax at temperature 0.2 is still nearly flat over 51865 tokens, at
    scale 10 sampling repeats it too.
    """
    model = tiny_whisper(base_dir)
    with torch.no_grad():
        embedding = model.model.decoder.embed_tokens.weight
        norm = model.model.decoder.layer_norm
        norm.weight.zero_()
        norm.bias.copy_(scale * embedding[token])
    return model


@pytest.fixture(scope="module")
def tokenizer(whisper_base_dir: Path):
    return WhisperProcessor.from_pretrained(whisper_base_dir).tokenizer


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def loop_token(tokenizer) -> int:
    ids = tokenizer(LOOP_TOKEN_TEXT, add_special_tokens=False).input_ids
    assert len(ids) == 1
    return ids[0]


# --------------------------------------------------------------------------- compression ratio


def _whisper_ratio(text: str) -> float:
    """openai-whisper's own ``compression_ratio`` (whisper/utils.py)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _lines(lang: str) -> list[str]:
    text = (SENTENCES / f"{lang}.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_compression_ratio_flags_loops_not_sentences() -> None:
    loops = ["la " * 30, "ytic" * 20, "privileges " * 12, "नमस्ते " * 10, "ਸਤ ਸ੍ਰੀ ਅਕਾਲ " * 8,
             "మీ స్థాన సమాచారాన్ని " * 6, "Il gatto dorme " * 8]
    for text in loops:
        assert compression_ratio(text) > 2.4, text
    sentences = ["Il gatto dorme sul divano.", "Domani andiamo al mare con gli amici.", "भारत एक विशाल देश है।",
                 "आज मौसम बहुत अच्छा है।", *(lines[0] for lines in map(_lines, ("hi", "pa", "te", "it", "en")))]
    for text in sentences:
        assert compression_ratio(text) < 2.4, text
    assert compression_ratio("") == 0.0
    for text in ("la " * 30, "ytic" * 20, "Domani andiamo al mare con gli amici. " * 3, "The cat sat on the mat."):
        assert compression_ratio(text) == _whisper_ratio(text)  # ASCII: exactly openai-whisper's measure


def test_compression_ratio_is_not_fooled_by_indic_utf8() -> None:
    """8 consecutive sentences (about 30 s of speech): UTF-8 bytes look like a loop, characters do not."""
    for lang in ("hi", "pa", "te", "it"):
        lines = _lines(lang)
        texts = [" ".join(lines[i : i + 8]) for i in range(0, len(lines) - 8, 8)]
        assert max(map(compression_ratio, texts)) < 2.4, lang
        assert max(map(compression_ratio, lines)) < 2.4, lang
    hindi = _lines("hi")
    long_hindi = [" ".join(hindi[i : i + 8]) for i in range(0, len(hindi) - 8, 8)]
    assert statistics.median(map(_whisper_ratio, long_hindi)) > 2.4  # why the bytes are not compressed as such


# --------------------------------------------------------------------------- token caps


def test_token_cap_formula() -> None:
    opts = DecodeOptions(max_new_tokens=100, max_tokens_base=16, max_tokens_per_second=50.0)
    assert token_caps(4, opts, [0.3, 1.01, 5.0, None]) == [31, 67, 100, 100]  # 16 + 15, ceil(66.5), capped, unknown
    assert token_caps(2, opts) == [100, 100]
    assert token_caps(2, DecodeOptions(max_tokens_per_second=0.0), [0.1, 1.0]) == [224, 224]
    with pytest.raises(ValueError, match="2 durations for 3"):
        token_caps(3, opts, [1.0, 2.0])


def test_default_token_cap_never_cuts_reference_transcripts(tokenizer) -> None:
    """Every sentence of hi/pa/te/it fits its default cap even spoken at 0.05 s per character.

    espeak-ng's fastest speaker (170 words per minute) needs 0.061 (it) to 0.083
    (te) s per character on average: 0.05 s is faster than any of them, and
    Punjabi's ~2 tokens per character make it the tightest (module docstring).
    """
    opts = DecodeOptions()
    for lang in ("hi", "pa", "te", "it"):
        lines = _lines(lang)
        lengths = [len(ids) for ids in tokenizer([" " + line for line in lines], add_special_tokens=False).input_ids]
        caps = token_caps(len(lines), opts, [0.05 * len(line) for line in lines])
        worst = max(length / cap for length, cap in zip(lengths, caps))
        assert worst < 1.0, f"{lang}: a reference transcript needs {worst:.0%} of its default cap"


@pytest.mark.parametrize("beam_size", [1, 2])
def test_cap_stops_each_row_at_its_own_length(whisper_base_dir: Path, tokenizer, features: torch.Tensor,
                                              beam_size: int) -> None:
    model = tiny_whisper(whisper_base_dir)
    eos = model.generation_config.eos_token_id
    model.generation_config.suppress_tokens = [*model.generation_config.suppress_tokens, eos]  # never ends by itself
    opts = DecodeOptions(beam_size=beam_size, max_new_tokens=20, max_tokens_base=2, max_tokens_per_second=10.0,
                         compression_ratio_threshold=None)
    languages = ["hi", "it", "te"]
    capped = decode_rows(model, tokenizer, input_features=features, languages=languages, opts=opts,
                         durations=[0.1, 10.0, 0.25])
    free = decode_rows(model, tokenizer, input_features=features, languages=languages, opts=opts)
    assert [row.cap for row in capped] == [3, 20, 5]
    assert [len(row.tokens) for row in capped] == [3, 20, 5]  # exactly cap_i: the others went on
    assert [len(row.tokens) for row in free] == [20, 20, 20]
    assert capped[1].tokens == free[1].tokens  # a neighbour's cap changes nothing in this row
    assert all(row.capped for row in capped)
    if beam_size == 1:  # greedy: a capped row is the free row's beginning
        assert capped[0].tokens == free[0].tokens[:3] and capped[2].tokens == free[2].tokens[:5]
    assert [row.text for row in capped] == [" ".join(tokenizer.decode(row.tokens, skip_special_tokens=True).split())
                                            for row in capped]
    stats: dict[str, int] = {}
    texts = decode_features(model, tokenizer, input_features=features, languages=languages, opts=opts,
                            durations=[0.1, 10.0, 0.25], stats=stats)
    assert texts == [row.text for row in capped]
    assert stats == {"fallbacks": 0, "fallbacks_unresolved": 0, "capped": 3}


# --------------------------------------------------------------------------- temperature fallback


@pytest.mark.parametrize("beam_size", [1, 2])
def test_a_looping_hypothesis_falls_back_to_sampling_reproducibly(
    whisper_base_dir: Path, tokenizer, features: torch.Tensor, loop_token: int, beam_size: int
) -> None:
    model = looping_whisper(whisper_base_dir, loop_token, scale=0.3)
    inputs = {"input_features": features[:2], "languages": ["it", "it"], "durations": [0.0, 100.0]}
    # caps 3 and 40: row 0 says "la la la" (too short to compress), row 1 loops
    opts = DecodeOptions(beam_size=beam_size, max_new_tokens=40, max_tokens_base=3, max_tokens_per_second=1.0)
    no_fallback = DecodeOptions(**{**vars(opts), "compression_ratio_threshold": None})
    first_pass = decode_rows(model, tokenizer, opts=no_fallback, **inputs)
    assert first_pass[1].tokens == (loop_token,) * 40 and first_pass[1].compression_ratio > 2.4

    rows = decode_rows(model, tokenizer, opts=opts, **inputs)
    assert rows[0] == first_pass[0] and rows[0].text == "la la la"  # passed: decoded once
    assert rows[1].attempts == 2 and rows[1].temperature == 0.2 and rows[1].passed
    assert rows[1].compression_ratio <= 2.4 and len(set(rows[1].tokens)) > 10
    assert decode_rows(model, tokenizer, opts=opts, **inputs) == rows  # the same command, the same hypotheses
    alone = decode_rows(model, tokenizer, opts=opts, input_features=features[1:2], languages=["it"], durations=[100.0])
    assert alone == rows[1:]  # a row's draws do not depend on its neighbours
    other_seed = decode_rows(model, tokenizer, opts=DecodeOptions(**{**vars(opts), "seed": 1}), **inputs)
    assert other_seed[0] == rows[0] and other_seed[1].text != rows[1].text
    stats: dict[str, int] = {}
    texts = decode_features(model, tokenizer, opts=opts, stats=stats, **inputs)
    assert texts == [row.text for row in rows]
    assert stats == {"fallbacks": 1, "fallbacks_unresolved": 0, "capped": 1 + rows[1].capped}


def test_fallback_that_never_passes_keeps_the_last_attempt(whisper_base_dir: Path, tokenizer,
                                                           features: torch.Tensor, loop_token: int) -> None:
    model = looping_whisper(whisper_base_dir, loop_token, scale=10.0)  # sampling loops as well
    opts = DecodeOptions(max_new_tokens=30, temperatures=(0.0, 0.5, 1.0))
    stats: dict[str, int] = {}
    rows = decode_rows(model, tokenizer, input_features=features[:1], languages=["it"], opts=opts)
    assert rows[0].attempts == 3 and rows[0].temperature == 1.0 and not rows[0].passed
    decode_features(model, tokenizer, input_features=features[:1], languages=["it"], opts=opts, stats=stats)
    assert stats == {"fallbacks": 1, "fallbacks_unresolved": 1, "capped": 1}
    one_temperature = decode_rows(model, tokenizer, input_features=features[:1], languages=["it"],
                                  opts=DecodeOptions(max_new_tokens=30, temperatures=(0.0,)))
    assert one_temperature[0].attempts == 1  # nothing to fall back to


def test_no_repeat_ngram_size_blocks_the_loop(whisper_base_dir: Path, tokenizer, features: torch.Tensor,
                                              loop_token: int) -> None:
    model = looping_whisper(whisper_base_dir, loop_token, scale=0.3)
    opts = DecodeOptions(max_new_tokens=20, **OFF)
    looped = decode_rows(model, tokenizer, input_features=features[:1], languages=["it"], opts=opts)[0].tokens
    assert looped == (loop_token,) * 20
    guarded = decode_rows(model, tokenizer, input_features=features[:1], languages=["it"],
                          opts=DecodeOptions(**{**vars(opts), "no_repeat_ngram_size": 2}))[0].tokens
    bigrams = list(zip(guarded, guarded[1:]))
    assert len(guarded) == 20 and len(set(bigrams)) == len(bigrams)


# --------------------------------------------------------------------------- everything off


def _plain_generate(model, tokenizer, inputs: dict, languages: list[str], beam_size: int, max_new_tokens: int):
    """decode_features before the safeguards: one generate call, its texts."""
    sequences = model.generate(**inputs, language=languages, task="transcribe", num_beams=beam_size, do_sample=False,
                               max_new_tokens=max_new_tokens, return_timestamps=False, force_unique_generate_call=True)
    return sequences, [" ".join(t.split()) for t in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


@pytest.mark.parametrize("beam_size", [1, 2])
def test_safeguards_off_decode_exactly_as_before(whisper_base_dir: Path, tokenizer, features: torch.Tensor,
                                                 loop_token: int, beam_size: int) -> None:
    from transformers.modeling_outputs import BaseModelOutput

    model = tiny_whisper(whisper_base_dir)
    languages = ["hi", "it", "te"]
    with torch.inference_mode():
        encoded = model.get_encoder()(input_features=features).last_hidden_state
    as_output = BaseModelOutput(last_hidden_state=encoded)
    for given, plain_inputs in (({"input_features": features}, {"input_features": features}),
                                ({"encoder_outputs": encoded}, {"encoder_outputs": as_output})):
        sequences, expected = _plain_generate(model, tokenizer, plain_inputs, languages, beam_size, 12)
        for durations in (None, [0.1, 0.2, 0.3]):  # per-second cap off: durations change nothing
            opts = DecodeOptions(beam_size=beam_size, max_new_tokens=12, **OFF)
            rows = decode_rows(model, tokenizer, languages=languages, opts=opts, durations=durations, **given)
            assert [row.text for row in rows] == expected and any(expected)
            eos = model.generation_config.eos_token_id
            for row, sequence in zip(rows, sequences.tolist()):
                body = sequence[4:]  # <|startoftranscript|><|lang|><|transcribe|><|notimestamps|>
                assert row.tokens == tuple(body[: body.index(eos)] if eos in body else body)
            assert decode_features(model, tokenizer, languages=languages, opts=opts, durations=durations,
                                   **given) == expected
    # zero threshold and a single temperature are "off" too; a looping model loops as it did
    looping = looping_whisper(whisper_base_dir, loop_token, scale=0.3)
    for decoder in (model, looping):
        _, expected = _plain_generate(decoder, tokenizer, {"input_features": features}, languages, beam_size, 12)
        for opts in (DecodeOptions(beam_size=beam_size, max_new_tokens=12, **OFF),
                     DecodeOptions(beam_size=beam_size, max_new_tokens=12, max_tokens_per_second=0.0,
                                   compression_ratio_threshold=0.0),
                     DecodeOptions(beam_size=beam_size, max_new_tokens=12, max_tokens_per_second=0.0,
                                   temperatures=(0.0,))):
            assert decode_features(decoder, tokenizer, input_features=features, languages=languages,
                                   opts=opts) == expected
    assert expected == ["la " * 11 + "la"] * 3


def test_options_are_checked_and_recordable() -> None:
    opts = DecodeOptions(temperatures=[0.0, 0.5])  # type: ignore[arg-type]  # a list from argparse is kept as a tuple
    assert opts.temperatures == (0.0, 0.5) and opts.fallback
    assert json.loads(json.dumps(DecodeOptions().as_dict()))["temperatures"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert not DecodeOptions(compression_ratio_threshold=None).fallback
    for bad in ({"temperatures": ()}, {"temperatures": (0.0, -0.2)}, {"temperatures": (math.nan,)},
                {"max_tokens_per_second": -1.0}, {"max_tokens_base": -1}, {"compression_ratio_threshold": -2.4},
                {"no_repeat_ngram_size": -1}, {"max_new_tokens": 0}, {"beam_size": 0}, {"batch_size": 0},
                {"lang_mode": "detect"}, {"encoder_trim": -0.5}):
        with pytest.raises(ValueError):
            DecodeOptions(**bad)
