#!/usr/bin/env python3
"""Merge the format jobs of one data dir and filter it into the dump dir.

Second half of the recipe's format stage (see ``format_wav_scp``): collects every
job's ``wav.scp``/``utt2dur``/``skipped``, drops utterances that are too short,
too long, or have an empty transcript, and writes a validated Kaldi dir whose
``wav.scp`` points into the arks.  Every drop is counted by reason in the log, and
listed in ``<out_dir>/../<name>.dropped`` (``utt reason``) so nothing disappears
silently.  If nothing usable remains the stage fails with the counts.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from espnet_adapters.data.kaldi import read_map, write_data_dir, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main

logger = logging.getLogger(__name__)

# Utterance-level files carried over from the source dir when it has them.
OPTIONAL_UTT_FILES = ("utt2lang", "utt2category")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", type=Path, required=True, help="Source Kaldi data dir (text, utt2spk, ...).")
    parser.add_argument("--job_dirs", type=Path, nargs="+", required=True, help="Outputs of format_wav_scp.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Formatted, filtered Kaldi data dir.")
    parser.add_argument("--min_dur", type=float, default=0.1, help="Drop utterances shorter than this (s).")
    parser.add_argument("--max_dur", type=float, default=30.0, help="Drop utterances longer than this (s).")
    return parser


def _merge(job_dirs: Sequence[Path], name: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for job_dir in job_dirs:
        path = job_dir / name
        if not path.exists():
            raise UserInputError(f"{path}: missing (did the format job fail? see its log)")
        merged.update(read_map(path))
    return merged


def run(args: argparse.Namespace) -> None:
    """Merge, filter, count and write."""
    text = read_map(args.in_dir / "text", allow_empty_value=True)
    utt2spk = read_map(args.in_dir / "utt2spk")
    wav_scp = _merge(args.job_dirs, "wav.scp")
    utt2dur = _merge(args.job_dirs, "utt2dur")
    dropped = {utt: f"unreadable: {reason}" for utt, reason in _merge(args.job_dirs, "skipped").items()}
    for utt in wav_scp:
        duration = float(utt2dur[utt])
        if not text.get(utt, "").strip():
            dropped[utt] = "empty transcript"
        elif duration < args.min_dur:
            dropped[utt] = f"too short ({duration:.3f} s < {args.min_dur} s)"
        elif duration > args.max_dur:
            dropped[utt] = f"too long ({duration:.3f} s > {args.max_dur} s)"
    kept = sorted(utt for utt in wav_scp if utt not in dropped)
    reasons = Counter(reason.split(" (")[0].split(":")[0] for reason in dropped.values())
    summary = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items())) or "none"
    logger.info("%s: kept %d of %d utterances; dropped: %s", args.out_dir, len(kept), len(utt2spk), summary)
    if not kept:
        raise UserInputError(f"{args.in_dir}: no usable utterance left (dropped: {summary})")
    optional = {}
    for name in OPTIONAL_UTT_FILES:
        if (args.in_dir / name).exists():
            values = read_map(args.in_dir / name)
            optional[name] = {utt: values[utt] for utt in kept}
    speakers = {utt2spk[utt] for utt in kept}
    spk2gender = None
    if (args.in_dir / "spk2gender").exists():
        spk2gender = {spk: g for spk, g in read_map(args.in_dir / "spk2gender").items() if spk in speakers}
    write_data_dir(
        args.out_dir,
        wav_scp={utt: wav_scp[utt] for utt in kept},
        text={utt: text[utt] for utt in kept},
        utt2spk={utt: utt2spk[utt] for utt in kept},
        utt2dur={utt: utt2dur[utt] for utt in kept},
        spk2gender=spk2gender,
        **optional,
    )
    write_map(args.out_dir.with_name(f"{args.out_dir.name}.dropped"), dropped)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.combine_formatted --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
