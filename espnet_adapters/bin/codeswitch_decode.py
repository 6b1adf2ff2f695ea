#!/usr/bin/env python3
"""Decode code-switched utterances (make_codeswitch) by routing segments to language adapters.

Per utterance (at most 30 s): its log-mel goes once through the *base* encoder
(adapters off: the LID was trained on the frozen encoder's outputs), and the
LID model (train_lid) classifies sliding windows over the valid encoder frames
(``--win_seconds`` every ``--hop_seconds``; frames are 20 ms).  The window
labels are smoothed (``--smoothing``): a majority vote over ``--smooth_windows``
windows centred on each, or the Viterbi path with ``--switch_penalty`` per
change of language (espnet_adapters.codeswitch.detect; select_smoothing picks
it on a dev set from this tool's posteriors, decoded with ``--systems`` none).  A
switch is placed where the smoothed label changes, at the centre of the first
window with the new label: a window takes the new label once most of its
frames are in the new language, i.e. when its centre passes the true switch,
so the centre is the unbiased estimate (up to half a hop).  The switch points
cut the audio into segments, each decoded on its own with its language's
adapter and that language's token forced; the segment hypotheses are joined in
time order.

Systems, all in one run with the same routed model (see route_decode):
  segments         the LID-detected segments, as above
  oracle_segments  the true segments and languages (segments_truth): the upper bound
  utterance_hard   one LID decision on all the utterance's frames -> one adapter
                   for the whole utterance (route_decode's hard routing)
  base             no adapter; Whisper detects the language itself

Writes, atomically, into ``--out_dir``:
  <system>/hyp            Kaldi text: ``utt hypothesis``
  <system>/hyp_segments   ``utt start end lang text``: one line per decoded piece
                          (the whole utterance for utterance_hard and base)
  segments/detected       ``utt t1 t2 ...``: the detected switch times (s)
  segments/posteriors/<utt>.npy
                          float32 (n_windows, 1 + n_labels): the window centre (s),
                          then the posterior of each LID label (stats.json lid.labels)
  stats.json              utterances, audio seconds, LID windowing, timings of the
                          analysis (encoder, LID) and of each system's decoding with
                          its safeguard counts (fallbacks, fallbacks_unresolved,
                          capped: see whisper_decode), options

Decoding options and safeguards are whisper_decode's (``--decode_config`` and
its overriding flags ``--beam_size`` ... ``--no_repeat_ngram_size``,
``--encoder_trim``); a piece's token cap, its batch's encoder frames under
``--encoder_trim`` and its place in the decoding order (sorted by duration)
come from its own duration (the segment's length, or the whole utterance's).
Every adapter must have been trained with the decoding's ``encoder_trim``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from espnet_adapters.codeswitch.decode import SYSTEMS, decode_codeswitch
from espnet_adapters.codeswitch.detect import add_smoothing_arguments, smoothing_from_args
from espnet_adapters.routing.decode import load_adapter_dirs, parse_adapter_arg
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.whisper.decode import add_search_arguments, decode_options


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", type=Path, required=True, help="make_codeswitch's dir (wav.scp, segments_truth).")
    parser.add_argument("--lid_dir", type=Path, required=True, help="train_lid's output (lid.json).")
    parser.add_argument("--adapter", type=parse_adapter_arg, action="append", required=True, metavar="LANG=DIR",
                        help="A language's LoRA adapter; repeat for every LID label.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--whisper_model", default=None, help="Base model; default: lid.json's base_model.")
    parser.add_argument("--systems", nargs="*", choices=SYSTEMS, default=list(SYSTEMS),
                        help="Systems to decode; none: only the analysis (segments/detected, posteriors, stats.json).")
    parser.add_argument("--win_seconds", type=float, default=1.0, help="LID window length (s).")
    parser.add_argument("--hop_seconds", type=float, default=0.2, help="LID window hop (s).")
    add_smoothing_arguments(parser)
    add_search_arguments(parser)
    parser.add_argument("--ngpu", type=int, default=0, help="0 decodes on the CPU, 1 on a CUDA device.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Analyse, decode and write (espnet_adapters.codeswitch.decode)."""
    torch.set_num_threads(args.num_threads)
    adapters = load_adapter_dirs(args.adapter)
    options = decode_options(args, "forced")
    try:
        smoothing = smoothing_from_args(args)
    except ValueError as err:
        raise UserInputError(f"--smoothing: {err}") from err
    decode_codeswitch(args.data_dir, args.lid_dir, adapters, args.out_dir, options,
                      whisper_model=args.whisper_model, systems=args.systems, win_seconds=args.win_seconds,
                      hop_seconds=args.hop_seconds, smoothing=smoothing, ngpu=args.ngpu,
                      num_threads=args.num_threads)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.codeswitch_decode --help``."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
