"""One writer for every decoder's outputs (Whisper, routed, code-switched, OWSM).

A decoding job writes into its ``out_dir``, replaced atomically (a killed job
leaves the old outputs or none):

  hyp         Kaldi text: ``utt hypothesis`` (an empty hypothesis is just ``utt``)
  hyp_lang    ``utt lang``: the language decoded in (optional)
  <name>      any further ``utt value`` map, e.g. route_decode's ``routing``
  stats.json  the job's statistics and options, JSON with 2-space indents

The maps are sorted by key (``write_map``), whatever order the utterances were
decoded in; the recipe merges the jobs' maps by name.  A decoder with more
files (codeswitch_decode: one hyp per system in subdirs, segment tables,
posterior arrays) adds them through ``more``, inside the same atomic dir.

Family-neutral (owsm_decode writes through it too), hence at the package's top
rather than under ``whisper/`` or ``utils/`` (it builds on ``data.kaldi``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from espnet_adapters.data.kaldi import write_map
from espnet_adapters.utils.fileio import atomic_dir

HYP = "hyp"
HYP_LANG = "hyp_lang"
STATS = "stats.json"


def write_hyp_files(
    directory: Path, hyps: Mapping[str, str], langs: Mapping[str, str] | None = None,
    maps: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """``hyp``, ``hyp_lang`` (if ``langs``) and one file per entry of ``maps`` in ``directory``."""
    write_map(directory / HYP, hyps)
    if langs is not None:
        write_map(directory / HYP_LANG, langs)
    for name, mapping in (maps or {}).items():
        if name in (HYP, HYP_LANG, STATS):
            raise ValueError(f"{name}: an output of its own, not an extra map")
        write_map(directory / name, mapping)


def write_stats(directory: Path, stats: Mapping[str, Any]) -> None:
    """``stats.json``: JSON, 2-space indents, non-ASCII escaped, a final newline."""
    (directory / STATS).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def write_decode_outputs(
    out_dir: str | os.PathLike[str],
    stats: Mapping[str, Any],
    hyps: Mapping[str, str] | None = None,
    langs: Mapping[str, str] | None = None,
    maps: Mapping[str, Mapping[str, str]] | None = None,
    more: Callable[[Path], None] | None = None,
) -> Path:
    """Write a decoding's outputs (module doc) into ``out_dir``, replacing it atomically.

    ``hyps`` None writes no top-level ``hyp`` (codeswitch_decode writes one per
    system through ``more``, which gets the temporary dir).
    """
    with atomic_dir(out_dir) as tmp:
        if hyps is not None:
            write_hyp_files(tmp, hyps, langs, maps)
        elif langs is not None or maps:
            raise ValueError("hyp_lang and extra maps go with a hyp")
        if more is not None:
            more(tmp)
        write_stats(tmp, stats)
    return Path(out_dir)
