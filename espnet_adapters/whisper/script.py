"""A script constraint for decoding: tokens that spell letters of another writing system are forbidden.

Whisper's byte-level BPE vocabulary is shared by 99 languages, and a model that
is unsure of a low-resource language drifts into a neighbour's script (Hindi
or Urdu letters for Punjabi, kana inside Telugu hypotheses).  With
``script_constraint: true`` (``conf/decode/*.yaml``) every row of a batch may
only emit tokens whose letters belong to its language's script(s)
(:data:`LANG_SCRIPTS`).

What a token is judged by: the characters its bytes decode to completely.
Unicode has no script property in Python's ``unicodedata``, so a letter's (or
combining sign's) script is the first word of its Unicode name
(``TELUGU VOWEL SIGN AA`` -> ``TELUGU``; ``CJK UNIFIED IDEOGRAPH-4E00`` ->
``CJK``).  Digits, punctuation, spaces, symbols and the special tokens are
allowed in every language.  A token that ends inside a character is judged by
what that character can still become: its first two bytes already fix a block of 64
code points (``E0 B0`` is Telugu, ``E3 81`` Hiragana), and the token is forbidden
if every letter of the block is foreign; a lone lead byte (``E0``: all Indic
scripts and more) is allowed, and so is a token that starts with the tail of a
character begun before it.  The constraint therefore removes most, not all,
foreign letters.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Sequence

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from espnet_adapters.utils.cli import UserInputError

_LATIN = frozenset({"LATIN"})
LANG_SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: _LATIN for lang in ("en", "it", "es", "fr", "de", "pt", "nl", "ca", "ro", "pl", "cs", "sv", "da", "no",
                                 "fi", "hu", "tr", "id", "ms", "vi", "sw", "hr", "sl", "sk", "et", "lv", "lt")},
    "hi": frozenset({"DEVANAGARI"}), "mr": frozenset({"DEVANAGARI"}), "ne": frozenset({"DEVANAGARI"}),
    "pa": frozenset({"GURMUKHI"}), "te": frozenset({"TELUGU"}), "ta": frozenset({"TAMIL"}),
    "kn": frozenset({"KANNADA"}), "ml": frozenset({"MALAYALAM"}), "bn": frozenset({"BENGALI"}),
    "gu": frozenset({"GUJARATI"}), "ur": frozenset({"ARABIC"}), "ar": frozenset({"ARABIC"}),
    "fa": frozenset({"ARABIC"}), "ru": frozenset({"CYRILLIC"}), "uk": frozenset({"CYRILLIC"}),
    "el": frozenset({"GREEK"}), "he": frozenset({"HEBREW"}), "th": frozenset({"THAI"}),
}
# Name prefixes of signs used with any script (combining accents, modifier letters).
_ANY_SCRIPT = frozenset({"COMBINING", "MODIFIER", "ZERO"})


def scripts_of(lang: str) -> frozenset[str]:
    """The scripts ``lang`` is written in; an unknown language is the user's error."""
    try:
        return LANG_SCRIPTS[lang]
    except KeyError:
        raise UserInputError(
            f"script_constraint: no script known for language {lang!r} (known: {', '.join(sorted(LANG_SCRIPTS))}); "
            "add it to espnet_adapters/whisper/script.py LANG_SCRIPTS or set script_constraint: false"
        ) from None


def char_script(char: str) -> str | None:
    """The script of a letter or combining sign (first word of its Unicode name); None for anything else."""
    if unicodedata.category(char)[0] not in "LM":
        return None
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0].split("-", 1)[0] if name else None


def _byte_table() -> dict[str, int]:
    """Byte-level BPE's printable stand-ins (GPT-2's table, which Whisper's tokenizer uses) -> bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    stand_ins, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            stand_ins[chr(byte)] = byte
        else:
            stand_ins[chr(256 + extra)] = byte
            extra += 1
    return stand_ins


def _token_bytes(tokenizer: PreTrainedTokenizerBase) -> list[bytes | None]:
    """The bytes each vocabulary id stands for (None for the special tokens and unknown spellings)."""
    table = _byte_table()
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [None if index in special or token is None or any(char not in table for char in token)
            else bytes(table[char] for char in token) for index, token in enumerate(tokens)]


def _sequence_length(lead: int) -> int:
    """Bytes of the UTF-8 sequence a lead byte starts (0: not a lead byte)."""
    return 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 0


@functools.lru_cache(maxsize=4096)
def _prefix_scripts(prefix: bytes) -> frozenset[str | None]:
    """The scripts of every character whose UTF-8 spelling starts with ``prefix`` (an incomplete one)."""
    length = _sequence_length(prefix[0])
    free_bits = 6 * (length - len(prefix))
    if free_bits > 12:  # a bare 4-byte lead covers 2^18 code points: say nothing
        return frozenset({None})
    first = int.from_bytes(prefix + b"\x80" * (length - len(prefix)), "big")
    scripts = set()
    for index in range(1 << free_bits):
        spelled = first + (((index >> 6) << 8) | (index & 0x3F) if free_bits > 6 else index)
        try:
            char = spelled.to_bytes(length, "big").decode("utf-8")
        except UnicodeDecodeError:
            continue
        scripts.add(char_script(char))
    return frozenset(scripts)


def _foreign(piece: bytes, allowed: frozenset[str]) -> bool:
    """Whether ``piece`` spells a letter of a script not in ``allowed``: a complete character, or an
    incomplete one at its end whose every possible completion that is a letter is a foreign one
    (the first two bytes of kana, of Devanagari in a Telugu row)."""
    def foreign(script: str | None) -> bool:
        return script is not None and script not in allowed and script not in _ANY_SCRIPT

    if any(foreign(char_script(char)) for char in piece.decode("utf-8", errors="ignore")):
        return True
    for start in range(max(0, len(piece) - 3), len(piece)):  # an incomplete sequence at the end
        length = _sequence_length(piece[start])
        if length and start + length > len(piece):
            letters = _prefix_scripts(piece[start:]) - {None}  # unassigned code points, digits, punctuation
            return bool(letters) and all(foreign(script) for script in letters)
    return False


@functools.lru_cache(maxsize=16)
def _mask(tokenizer: PreTrainedTokenizerBase, allowed: frozenset[str], vocab_size: int) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    for index, piece in enumerate(_token_bytes(tokenizer)[:vocab_size]):
        if piece is not None and _foreign(piece, allowed):
            mask[index] = True
    return mask


def suppressed_mask(tokenizer: PreTrainedTokenizerBase, lang: str, vocab_size: int) -> torch.Tensor:
    """Boolean (vocab_size,): True for the tokens ``lang``'s rows may not emit (cached per tokenizer and script)."""
    return _mask(tokenizer, scripts_of(lang), vocab_size)


def script_suppressed_ids(tokenizer: PreTrainedTokenizerBase, lang: str) -> list[int]:
    """The ids :func:`suppressed_mask` forbids to ``lang`` (over the tokenizer's vocabulary), for backends
    that take a list (CTranslate2's ``suppress_tokens``)."""
    return torch.nonzero(suppressed_mask(tokenizer, lang, len(tokenizer))).flatten().tolist()


class ScriptLogitsProcessor(LogitsProcessor):
    """Forbids, in row i (all of its beams), the tokens of scripts other than ``languages[i]``'s."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, languages: Sequence[str], vocab_size: int) -> None:
        self.masks = torch.stack([suppressed_mask(tokenizer, lang, vocab_size) for lang in languages])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        beams, rest = divmod(input_ids.shape[0], len(self.masks))
        if rest:
            raise ValueError(f"{input_ids.shape[0]} rows for {len(self.masks)} script masks")
        masks = self.masks.repeat_interleave(beams, dim=0).to(scores.device)
        return scores.masked_fill(masks[:, : scores.shape[1]], float("-inf"))
