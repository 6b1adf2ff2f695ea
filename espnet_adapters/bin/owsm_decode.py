#!/usr/bin/env python3
"""Decode a Kaldi data dir (or one job's share of it) with an OWSM model through ESPnet.

The base model is ``--owsm_model``: a pack zip (``espnet2.bin.pack s2t``, e.g. the
tiny offline OWSM) or a Hub name such as ``espnet/owsm_v3.1_ebf_base`` (online, or
offline from a Hugging Face cache under ``--owsm_cache``).  ``--adapter_dir``
attaches one of our LoRA adapters (adapter.yaml + adapter-only checkpoint) to
*that* base; an adapter trained on another base is refused.  ESPnet's
``Speech2Text`` runs in-process, one utterance at a time, with the language token
of the utterance's language (utt2lang, or --lang) forced and the <asr> task
without timestamps.

Writes, atomically, into ``--out_dir`` (the same files as whisper_decode, so the
scoring stage reads both):
  hyp         Kaldi text file: ``utt hypothesis`` (an empty hypothesis is just ``utt``)
  hyp_lang    ``utt lang``: the language decoded in
  stats.json  utterances, audio seconds, wall seconds, real-time factor, model, adapter,
              the model's window and how many utterances were longer (Speech2Text pads
              or cuts every utterance to the window: those are decoded cut, with a warning)

The recipe's decode stage runs one of these per ``--nj`` job (``--keys``) through
``${decode_cmd}`` and merges the hyps.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from espnet_adapters.data.audio import read_audio
from espnet_adapters.data.kaldi import read_map, read_map_lines
from espnet_adapters.decode_io import write_decode_outputs
from espnet_adapters.owsm.data import model_window
from espnet_adapters.owsm.decode import DecodeOptions, load_speech2text, transcribe
from espnet_adapters.owsm.model import fetch_owsm
from espnet_adapters.utils.cli import UserInputError, make_parser, run_main
from espnet_adapters.whisper.features import job_keys

logger = logging.getLogger(__name__)
FS = 16000


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi dir with wav.scp (and utt2lang).")
    parser.add_argument("--keys", type=Path, default=None, help="Decode only these utterances (first column).")
    parser.add_argument("--out_dir", type=Path, required=True, help="Where the outputs (listed above) go.")
    parser.add_argument("--owsm_model", required=True, help="Pack zip, or Hub name (espnet/owsm_v3.1_ebf_base).")
    parser.add_argument("--owsm_cache", type=Path, default=Path("exp/owsm_cache"),
                        help="espnet_model_zoo cache dir (also where a Hugging Face cache layout is looked up).")
    parser.add_argument("--adapter_dir", type=Path, default=None, help="A LoRA adapter dir of the OWSM stages.")
    parser.add_argument("--lang", default=None, help="Language of every utterance (default: utt2lang).")
    parser.add_argument("--beam_size", type=int, default=5, help="Beam size (1 = greedy).")
    parser.add_argument("--ctc_weight", type=float, default=0.0, help="Weight of CTC in joint decoding.")
    parser.add_argument("--maxlenratio", type=float, default=0.0,
                        help="Max output length / encoder frames (0: up to the encoder length).")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when present.")
    return parser


def run(args: argparse.Namespace) -> None:
    """Decode the job's utterances and write the outputs."""
    wav = read_map_lines(args.data_dir / "wav.scp")
    keys = job_keys(args.keys, wav, args.data_dir / "wav.scp")
    if args.lang is not None:
        utt2lang = {utt: args.lang for utt in keys}
    elif (args.data_dir / "utt2lang").exists():
        utt2lang = read_map(args.data_dir / "utt2lang")
    else:
        raise UserInputError(f"{args.data_dir}: no utt2lang; give --lang")
    model = fetch_owsm(args.owsm_model, args.owsm_cache)
    options = DecodeOptions(args.beam_size, args.ctc_weight, args.maxlenratio, args.device)
    decoders: dict[str, object] = {}  # one Speech2Text per language (the language token is its default)
    hyps: dict[str, str] = {}
    window = model_window(model.config)
    cut: list[str] = []  # utterances longer than the window: Speech2Text decodes their first `window` seconds
    seconds = 0.0
    started = time.perf_counter()
    for utt in tqdm(keys, desc=f"decode {args.data_dir.name}", unit="utt"):
        lang = utt2lang[utt]
        if lang not in decoders:
            decoders[lang] = load_speech2text(model, lang, args.adapter_dir, options)
        line, entry = wav[utt]
        audio = read_audio(entry, FS, f"{args.data_dir / 'wav.scp'}:{line}")
        seconds += len(audio) / FS
        if len(audio) > window * FS:
            cut.append(utt)
        hyps[utt] = transcribe(decoders[lang], audio)
    wall = time.perf_counter() - started
    stats = {
        "utterances": len(keys), "audio_seconds": round(seconds, 3), "wall_seconds": round(wall, 3),
        "rtf": round(wall / seconds, 4) if seconds else None, "model": model.name,
        "adapter": None if args.adapter_dir is None else str(args.adapter_dir),
        "decode_config": None, "options": vars(options),
        # results' decoding variant: the search flags given other values than their defaults (not the device)
        "options_changed": {name: value for name, value in vars(options).items()
                            if name != "device" and value != get_parser().get_default(name)},
        "window_seconds": window, "cut_to_window": len(cut),
    }
    if cut:
        logger.warning("%d of %d utterances are longer than the model's %g s window: Speech2Text decodes only "
                       "their first %g s (first: %s)", len(cut), len(keys), window, window, cut[0])
    write_decode_outputs(args.out_dir, stats, hyps=hyps, langs={utt: utt2lang[utt] for utt in keys})
    logger.info("decoded %d utterances in %.1f s", len(keys), wall)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(get_parser(), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
