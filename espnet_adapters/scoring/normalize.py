"""The text normaliser applied identically to references and hypotheses before scoring.

Why not Whisper's ``BasicTextNormalizer``: it deletes every character of Unicode
category ``M`` (after NFKD), i.e. the virama, the vowel signs (matras), anusvara,
nukta, Gurmukhi addak/tippi and every Telugu vowel sign.  ``क्षेत्र`` becomes
``क ष त र`` and WER/CER on Hindi, Punjabi or Telugu become meaningless.  This
normaliser keeps every letter and combining mark.

Decisions (all versioned by :data:`NORMALIZER_VERSION`, which ``scores.json`` records):

1. **Unicode NFC**, not NFKC.  NFC only unifies canonically equivalent spellings,
   which is what differs between transcribers and model outputs in Indic text:
   precomposed vs. decomposed nukta letters (``क़`` U+0958 vs ``क`` + ``़``) and
   Telugu ``ై`` (U+0C48) vs ``ె`` + ``ౖ``.  NFKC would additionally apply
   compatibility mappings that change content rather than encoding
   (``²`` -> ``2``, ``½`` -> ``1⁄2``, ``ﬁ`` -> ``fi``, ``™`` -> ``TM``).  NFC is applied
   again at the end because case folding and character removal can leave
   sequences that are not in NFC.
2. **Format characters (category Cf) are deleted**: ZWJ, ZWNJ, zero-width space,
   BOM, soft hyphen, bidi marks.  ZWJ/ZWNJ only select a rendering (e.g. an
   explicit halant form) and are used inconsistently by transcribers and
   tokenizers; deleting them on both sides is standard for scoring.
3. **Punctuation (P*), symbols (S*), separators (Z*) and control characters (Cc)
   become a space**.  This covers the danda ``।`` and double danda ``॥``,
   quotes ``“ ” « »``, hyphens and apostrophes, and also ``%``, ``$``, ``₹``.
   Replacing with a space rather than deleting keeps ``word,word`` as two words.
   Consequence for Italian: the elided article is split off, ``l'uomo`` ->
   ``l uomo`` on both sides, so an apostrophe variant (``'`` vs ``’``) or a
   missing apostrophe written as a space is not an error, while ``luomo`` is.
   Decimal points split numbers (``3.5`` -> ``3 5``) on both sides alike.
4. **Letters, combining marks (Mn, Mc, Me) and numbers (N*) are kept as they are**.
   Digits are not converted between scripts or to words: ``५`` and ``5`` and
   ``cinque`` stay different words, so a numerals-style mismatch counts as an
   error, visibly, rather than being hidden by a partial number normaliser.
5. **Case folding** (``str.casefold``): needed for Latin script (Italian),
   a no-op for Devanagari, Gurmukhi and Telugu, which have no case.
6. **Whitespace is collapsed** to single spaces and stripped at both ends.

``lang`` is part of the signature so that a language-specific rule can be added
without touching callers; none of the current languages (hi, pa, te, it) needs
one.  Rules deliberately *not* applied, because they would hide real
differences: nukta removal (``ज़`` vs ``ज``), anusvara/candrabindu merging,
Italian accent merging (``perché`` vs ``perchè``).
"""

from __future__ import annotations

import unicodedata

NORMALIZER_VERSION = "espnet_adapters.nfc-casefold-nopunct.v1"

# Unicode general categories by first letter (P, S, Z) or in full (Cc, Cf).
_TO_SPACE_MAJOR = frozenset("PSZ")
_TO_SPACE_EXACT = frozenset({"Cc"})
_DELETED = frozenset({"Cf"})


def _map_char(char: str) -> str:
    """Map one character to itself, a space or nothing, by its general category."""
    category = unicodedata.category(char)
    if category in _DELETED:
        return ""
    if category[0] in _TO_SPACE_MAJOR or category in _TO_SPACE_EXACT:
        return " "
    return char


def normalize_text(text: str, lang: str) -> str:
    """Normalise one transcript for WER/CER scoring (see the module docstring).

    ``lang`` is the ISO 639-1 code of the transcript's language; no language
    currently has a rule of its own.
    """
    folded = unicodedata.normalize("NFC", text).casefold()
    mapped = "".join(_map_char(char) for char in folded)
    return " ".join(unicodedata.normalize("NFC", mapped).split())
