#!/usr/bin/env python3
"""Format one job's share of a data dir's audio: mono, 16 kHz, into a kaldiio ark.

The recipe's format stage splits a data dir's utterances into ``--nj`` key lists
and runs this once per list (through ``${train_cmd}``), then
``combine_formatted`` merges the jobs and filters the result.  Reading the
original audio once, here, means every later stage reads one uniform format,
whatever the corpus shipped (mp3 at 48 kHz, m4a, piped sox commands, segments
of long recordings).

Outputs in ``--out_dir``: ``wav.ark`` + ``wav.scp`` (PCM16 wav inside the ark, as
``kaldiio`` writes it), ``utt2dur``, and ``skipped`` (``utt reason`` for audio that
could not be read: the stage log counts them; they never stop the other utterances).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import kaldiio
from tqdm import tqdm

from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines, write_map
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.utils.fileio import atomic_dir

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--in_dir", type=Path, required=True, help="Kaldi data dir with wav.scp (and segments).")
    parser.add_argument("--keys", type=Path, required=True, help="Utterance ids of this job (first column).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Job output dir (replaced atomically).")
    parser.add_argument("--fs", type=int, default=16000, help="Output sample rate.")
    return parser


def _segments(in_dir: Path) -> dict[str, tuple[str, float, float, str]]:
    """utt -> (recording, start, end, "segments:LINE") of ``in_dir/segments``, if there is one."""
    path = in_dir / "segments"
    if not path.exists():
        return {}
    segments = {}
    for utt, (number, value) in read_map_lines(path).items():
        fields = value.split()
        try:
            segments[utt] = (fields[0], float(fields[1]), float(fields[2]), f"{path}:{number}")
        except (IndexError, ValueError) as err:
            raise UserInputError(f"{path}:{number}: utterance {utt}: expected 'utt rec start end'") from err
    return segments


def run(args: argparse.Namespace) -> None:
    """Read, resample and store every utterance of the key list."""
    wav_scp = read_map_lines(args.in_dir / "wav.scp")
    segments = _segments(args.in_dir)
    keys = list(read_map(args.keys, allow_empty_value=True))
    durations: dict[str, str] = {}
    skipped: dict[str, str] = {}
    cached: tuple[str, object] | None = None
    with atomic_dir(args.out_dir) as tmp:
        ark, scp = tmp / "wav.ark", tmp / "wav.scp"
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}", write_function="soundfile") as writer:
            for utt in tqdm(keys, desc=f"format {args.in_dir.name}", mininterval=10):
                rec, start, end, segment = segments.get(utt, (utt, 0.0, None, None))
                if rec not in wav_scp:
                    skipped[utt] = f"{segment or args.in_dir / 'wav.scp'}: no wav.scp entry for recording {rec}"
                    continue
                lineno, entry = wav_scp[rec]
                where = f"{args.in_dir / 'wav.scp'}:{lineno}"
                try:
                    if cached is None or cached[0] != rec:
                        cached = (rec, read_audio(entry, args.fs, where))
                    audio = cached[1]
                except UserInputError as err:
                    logger.warning("skipping %s: %s", utt, err)
                    skipped[utt] = str(err)
                    continue
                first = int(round(start * args.fs))
                last = len(audio) if end is None else int(round(end * args.fs))
                piece = audio[first:last]
                if piece.size == 0:
                    skipped[utt] = (f"{segment}: segment {start}-{end} s is empty: recording {rec} ({where}) "
                                    f"lasts {len(audio) / args.fs:.2f} s")
                    continue
                writer(utt, (args.fs, piece))
                durations[utt] = f"{piece.size / args.fs:.3f}"
        # The ark's scp holds the temp dir's path: point it at the final location.
        ark_scp = read_map(scp)
        write_map(scp, {utt: value.replace(str(ark), str(args.out_dir.resolve() / "wav.ark")) for utt, value in ark_scp.items()})
        write_map(tmp / "utt2dur", durations)
        write_map(tmp / "skipped", skipped)
    logger.info("%s: %d formatted, %d skipped", args.out_dir, len(durations), len(skipped))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.format_wav_scp --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
