"""Data preparation for real speech corpora in their native on-disk layouts.

One module per corpus (``commonvoice``, ``mls``, ``kathbath``, ``indicvoices``,
``fleurs``), each exposing the same small interface, so that the entry point
``espnet_adapters.bin.prepare_corpus`` and the mixing step never special-case a
corpus:

* ``NAME``: the corpus name used on the command line and in ``utt2category``;
* ``TAG``: short prefix of its speaker ids (``cv``, ``mls``, ``kb``, ``iv``, ``fl``);
* ``DB_VAR``: the ``db.sh`` variable holding its root (``COMMONVOICE`` ...);
* ``LANGS``: our language code -> the corpus's own locale/folder name;
* ``splits(options) -> tuple[str, ...]``: the splits it provides (``train``, ``dev``,
  ``test`` and extras such as Kathbath's ``test_known``);
* ``prepare(root, lang, split, skips, options) -> list[Utterance]``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from espnet_adapters.utils.cli import UserInputError

CORPORA = ("commonvoice", "mls", "kathbath", "indicvoices", "fleurs")


@dataclass(frozen=True)
class PrepOptions:
    """Corpus-specific choices, all with the defaults a researcher would pick.

    Attributes:
        min_dur, max_dur: utterances outside this range (seconds) are skipped (counted).
        cv_min_votes: Common Voice, keep rows with ``up_votes - down_votes >=`` this
            (the official splits are already validated; raise it for stricter data).
        mls_limited: MLS training subset: ``""`` (full train), ``"1h"`` or ``"9h"``
            (the ``limited_supervision`` handle lists).
        iv_text: IndicVoices transcript: ``normalized`` or ``verbatim``.
    """

    min_dur: float = 0.1
    max_dur: float = 30.0
    cv_min_votes: int = 0
    mls_limited: str = ""
    iv_text: str = "normalized"


def get_corpus(name: str) -> ModuleType:
    """The preparer module of corpus ``name`` (clear error for an unknown name)."""
    if name not in CORPORA:
        raise UserInputError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")
    return importlib.import_module(f"espnet_adapters.data.corpora.{name}")


def corpus_locale(module: ModuleType, lang: str) -> str:
    """The corpus's name for our language code, or a clear error."""
    try:
        return module.LANGS[lang]
    except KeyError:
        raise UserInputError(
            f"corpus {module.NAME} has no language {lang!r} (known: {', '.join(sorted(module.LANGS))})"
        ) from None
