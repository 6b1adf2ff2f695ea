#!/usr/bin/env python3
"""What stage 5 (the encoder cache) costs per utterance, five ways, and how far each moves the outputs.

The same utterances, the same threads, one process, one run (ratios to (a) are measured side by side):

  (a) hf-b8       transformers fp32, batches of 8 padded 30 s windows: cache_encoder as stage 5
                  ran it before this benchmark (its --batch_size 8)
  (b) hf-b1       the same, one utterance per call
  (c) ct2-fp32    CTranslate2's encoder (the base model exported by export_adapter), float32
  (d) ct2-int8    the same, int8 weights
  (e) hf-speech   transformers fp32, the encoder run on each utterance's speech + --margin
                  seconds instead of the 30 s window: what stage 5 runs with encoder_span: speech
                  (conf/decode/speech.yaml; espnet_adapters.whisper.inputs.encode_speech).  Its
                  frames attend to a shorter context, so its outputs differ from Whisper's: the
                  adapters are trained and decoded on them (README: "encoder_span")

Timed: the encoder calls only (features are read before), after one warm-up call per variant,
variants round-robin over --rounds rounds (the median per variant is printed).  Distance to
(a) on the frames the decoder sees (encoder_trim: the speech + --margin s): max |diff| and the
relative Frobenius norm ||x - a|| / ||a||, pooled over the utterances.

  . ./path.sh
  python bench/encoder_cache.py --utts 16                       # espeak-ng Hindi sentences
  python bench/encoder_cache.py --data_dir dump/raw/it_test --utts 24 --num_threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from train_throughput import _cpu_model, _dirs, _prepare_data, _version, worker_env

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "a": "transformers fp32, batch 8, 30 s window (stage 5 before)",
    "b": "transformers fp32, batch 1, 30 s window",
    "c": "CTranslate2 float32, batch 8, 30 s window",
    "d": "CTranslate2 int8, batch 8, 30 s window",
    "e": "transformers fp32, speech + margin only (encoder_span: speech)",
}


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-base", help="--whisper_model: short name, local dir or Hub id.")
    parser.add_argument("--lang", default="hi", help="Language of the synthesized sentences.")
    parser.add_argument("--data_dir", type=Path, default=None, help="Kaldi dir (wav.scp, text, utt2lang) instead.")
    parser.add_argument("--utts", type=int, default=16, help="Utterances encoded by every variant.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch / CTranslate2 threads (stage 5: 1 per job).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds per variant (round-robin).")
    parser.add_argument("--margin", type=float, default=1.0, help="Seconds after the speech ((e), and the distance).")
    parser.add_argument("--work_dir", type=Path, default=None, help="Scratch dir (kept); default: a temporary one.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    env = worker_env(args.num_threads)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    from espnet_adapters.whisper.ct2_decode import encode as ct2_encode
    from espnet_adapters.whisper.encoder_cache import torch_encode
    from espnet_adapters.whisper.export import export_adapter
    from espnet_adapters.whisper.features import iter_audio_logmel, stack_features
    from espnet_adapters.whisper.inputs import encode_speech, kept_frames, speech_frames
    from espnet_adapters.whisper.model import load_whisper, resolve_model

    torch.set_num_threads(args.num_threads)
    scratch = tempfile.TemporaryDirectory(prefix="bench_enc_") if args.work_dir is None else None
    work = Path(scratch.name) if scratch else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    _prepare_data(args, work, env)
    extractor = WhisperFeatureExtractor.from_pretrained(resolve_model(args.model))
    items = list(iter_audio_logmel(_dirs(work)["data"], None, extractor))
    feats = [item[1] for item in items]
    seconds = [item[2] for item in items]
    model, _ = load_whisper(args.model, torch.device("cpu"))
    encoder = model.get_encoder()
    ct2 = {}
    for quantization in ("float32", "int8"):
        export = export_adapter(args.model, None, work / "export", quantization)
        ct2[quantization] = ctranslate2.models.Whisper(str(export.ct2_dir), device="cpu", compute_type=quantization,
                                                       intra_threads=args.num_threads)
    windows = stack_features(feats)  # (N, n_mels, 3000): Whisper's padded windows

    hf_encode = torch_encode(encoder)  # what cache_encoder --backend hf runs

    def hf(batch: int) -> list[np.ndarray]:
        return [row.numpy() for start in range(0, len(feats), batch) for row in hf_encode(windows[start:start + batch])]

    def ct(quantization: str) -> list[np.ndarray]:  # what cache_encoder --backend ct2 runs (it refuses int8)
        return [row for start in range(0, len(feats), 8)
                for row in ct2_encode(ct2[quantization], windows[start:start + 8], [None] * 8, None)]

    def speech() -> list[np.ndarray]:
        frames = speech_frames(seconds, args.margin)
        with torch.inference_mode():
            out = encode_speech(encoder, frames, features=windows)
        return [row[:count].numpy() for row, count in zip(out, frames)]

    runs = {"a": lambda: hf(8), "b": lambda: hf(1), "c": lambda: ct("float32"), "d": lambda: ct("int8"), "e": speech}
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    kept = [kept_frames([duration], args.margin) for duration in seconds]
    ref = np.concatenate([row[:k] for row, k in zip(outputs["a"], kept, strict=True)])
    per_utt = {name: statistics.median(values) / len(feats) for name, values in times.items()}
    print(f"# encoder cache: {len(feats)} utterances ({sum(seconds) / len(feats):.1f} s mean), {args.num_threads} "
          f"thread(s), median of {args.rounds} rounds; torch {_version('torch')}, ctranslate2 "
          f"{_version('ctranslate2')}, CPU {_cpu_model()}, load {os.getloadavg()[0]:.1f}")
    print("| variant | s / utterance | speed vs (a) | max abs diff vs (a) | rel. diff vs (a) |")
    print("|---|---:|---:|---:|---:|")
    for name, label in VARIANTS.items():
        got = np.concatenate([row[:k] for row, k in zip(outputs[name], kept, strict=True)])
        diff = got - ref
        print(f"| ({name}) {label} | {per_utt[name]:.3f} | {per_utt['a'] / per_utt[name]:.2f}x | "
              f"{np.abs(diff).max():.4f} | {np.linalg.norm(diff) / np.linalg.norm(ref):.4f} |")
    if scratch:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
