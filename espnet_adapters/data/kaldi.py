"""Kaldi data directories: read, write, validate, fix and subset them.

A Kaldi data directory is a set of "key rest-of-line" files (``wav.scp``,
``text``, ``utt2spk``, ``spk2utt``, ...).  Kaldi and ESPnet tools merge these
files line by line, as ``sort``/``join`` do, so every file must be sorted in
``LC_ALL=C`` order (byte order of the UTF-8 encoding, which is also Python's
code point order for ``str``), have unique keys and list the same utterances.
A violation does not fail loudly downstream: it silently drops or mismatches
utterances.  That is why everything here is checked up front and reported by
file and line, and why every writer goes through a temporary directory that is
validated before it replaces the destination.

This module is the one to import; the work is done beside it, by concern:
  kaldi_maps.py      one file: parse it, report its problems, read_map / write_map
  kaldi_validate.py  a directory: every rule (validate_data_dir)
  kaldi_dirs.py      write_data_dir, fix_data_dir, subset_data_dir
"""

from __future__ import annotations

from espnet_adapters.data.kaldi_dirs import BACKUP_DIR, fix_data_dir, subset_data_dir, write_data_dir
from espnet_adapters.data.kaldi_maps import (
    MAX_SHOWN_PER_KIND, Entry, PathLike, ark_file, read_map, read_map_lines, read_utt2spk, spk2utt_from_utt2spk,
    write_map,
)
from espnet_adapters.data.kaldi_validate import KNOWN_FILES, UTT_FILES, validate_data_dir

__all__ = [
    "BACKUP_DIR", "KNOWN_FILES", "MAX_SHOWN_PER_KIND", "UTT_FILES", "Entry", "PathLike", "ark_file", "fix_data_dir",
    "read_map", "read_map_lines", "read_utt2spk", "spk2utt_from_utt2spk", "subset_data_dir", "validate_data_dir",
    "write_data_dir", "write_map",
]
