"""The script constraint (espnet_adapters/whisper/script.py): which tokens a language may emit, and decoding with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_decode_rules import OFF, looping_whisper
from transformers import WhisperProcessor

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.decode import DecodeOptions, decode_rows
from espnet_adapters.whisper.script import ScriptLogitsProcessor, char_script, suppressed_mask

VOCAB = 51865


@pytest.fixture(scope="module")
def tokenizer(whisper_base_dir: Path):
    return WhisperProcessor.from_pretrained(whisper_base_dir).tokenizer


def _id(tokenizer, token: str) -> int:
    index = tokenizer.convert_tokens_to_ids(token)
    assert index != tokenizer.unk_token_id, token
    return index


def test_char_script() -> None:
    assert [char_script(c) for c in "తਨनaーà"] == ["TELUGU", "GURMUKHI", "DEVANAGARI", "LATIN", "KATAKANA", "LATIN"]
    assert [char_script(c) for c in "1 ,.\u0964"] == [None, None, None, None, None]  # digits, space, punctuation, danda
    assert char_script("\u094d") == "DEVANAGARI"  # virama: a combining sign, judged by its script


def test_masks_by_language(tokenizer) -> None:
    masks = {lang: suppressed_mask(tokenizer, lang, VOCAB) for lang in ("te", "hi", "it")}
    hello, kana, ma = _id(tokenizer, "Ġhello"), _id(tokenizer, "ãĥ¼"), _id(tokenizer, "à¤®")  # ' hello', 'ー', 'म'
    assert masks["te"][hello] and masks["hi"][hello] and not masks["it"][hello]
    assert masks["te"][kana] and masks["hi"][kana] and masks["it"][kana]
    assert masks["te"][ma] and not masks["hi"][ma] and masks["it"][ma]
    # A token ending inside a character: E0 B0 can only become Telugu (U+0C00-0C3F), E0 A4 only Devanagari.
    telugu_start, devanagari_start = _id(tokenizer, "à°"), _id(tokenizer, "Ġà¤")
    assert not masks["te"][telugu_start] and masks["hi"][telugu_start]
    assert masks["te"][devanagari_start] and not masks["hi"][devanagari_start]
    lone_lead = _id(tokenizer, "à")  # byte E0 starts U+0800-0FFF: every Indic script, no Latin letter
    assert not masks["te"][lone_lead] and not masks["hi"][lone_lead] and masks["it"][lone_lead]
    digits, comma = tokenizer.encode(" 2024", add_special_tokens=False), _id(tokenizer, ",")
    for lang, mask in masks.items():
        assert not mask[digits].any() and not mask[comma], lang
        assert not mask[tokenizer.all_special_ids].any(), lang  # the end of text and the prompt tokens
    assert 40_000 < int(masks["te"].sum()) < VOCAB and 1_000 < int(masks["it"].sum()) < 20_000


def test_unknown_language_is_the_users_error(tokenizer) -> None:
    with pytest.raises(UserInputError, match="no script known for language 'xx'"):
        suppressed_mask(tokenizer, "xx", VOCAB)


def test_processor_masks_each_row_and_its_beams(tokenizer) -> None:
    hello = _id(tokenizer, "Ġhello")
    processor = ScriptLogitsProcessor(tokenizer, ["it", "te"], VOCAB)
    scores = processor(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, VOCAB))  # 2 rows x 2 beams
    assert scores[:2, hello].tolist() == [0.0, 0.0] and scores[2:, hello].tolist() == [-float("inf")] * 2
    with pytest.raises(ValueError, match="3 rows for 2 script masks"):
        processor(torch.zeros(3, 3, dtype=torch.long), torch.zeros(3, VOCAB))


def test_decoding_never_emits_a_forbidden_token(whisper_base_dir: Path, tokenizer) -> None:
    """A decoder that always prefers ' la' keeps looping in Italian; in Telugu it may not say it at all."""
    loop = tokenizer(" la", add_special_tokens=False).input_ids[0]
    model = looping_whisper(whisper_base_dir, loop, scale=0.3)
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(3))
    opts = DecodeOptions(max_new_tokens=12, script_constraint=True, **OFF)
    rows = decode_rows(model, tokenizer, input_features=features, languages=["it", "te"], opts=opts)
    assert rows[0].tokens == (loop,) * 12
    mask = suppressed_mask(tokenizer, "te", VOCAB)
    assert len(rows[1].tokens) > 0 and loop not in rows[1].tokens
    assert not mask[list(rows[1].tokens)].any()
    free = decode_rows(model, tokenizer, input_features=features[1:], languages=["te"],
                       opts=DecodeOptions(max_new_tokens=12, **OFF))
    assert free[0].tokens == (loop,) * 12  # without the constraint, the same row loops on ' la'
