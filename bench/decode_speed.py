#!/usr/bin/env python3
"""Decoding speed, memory and WER of one adapter: transformers (unmerged, merged) vs CTranslate2.

The same utterances and threads, five ways; (a)-(d) decode with --decode_config (the
recipe's conf/decode/default.yaml: greedy, its safeguards, encoder_trim 1 s):

  (a) hf-peft     whisper_decode, transformers + the peft adapter unmerged (--adapter_dir)
  (b) hf-merged   whisper_decode, the adapter merged into the weights (--merge_adapter true)
  (c) ct2-fp32    whisper_decode --decode_backend ct2 on export_adapter's float32 export
  (d) ct2-int8    the same on its int8 export
  (e) fw-base     faster-whisper (WhisperModel.transcribe: its own search, temperature
                  fallback and feature extraction), int8, on the *base* model exported by
                  export_adapter without an adapter: the reference point (ratios are to it)

Each variant runs in its own subprocess (this script with a hidden --worker option), so its
peak RSS (VmHWM, model loading included) is its own.  Timed: (a)-(d) whisper_decode's
decoding loop (stats.json ``decode_seconds``; the log-mel features are computed before it),
(e) the transcribe loop, which includes faster-whisper's feature extraction (a few ms per
utterance).  Real-time factor = timed seconds / audio seconds; WER on
espnet_adapters.scoring's normalised text.  The exports are a one-off cost, printed apart.

The data: --utts sentences spoken by espeak-ng (as bench/train_throughput.py makes them), or
the first --utts utterances of --data_dir (wav.scp, text, utt2lang).  The adapter: --adapter_dir,
else a random one (conf/lora/r32_qv_dec.yaml with random B weights): then the speeds are
meaningful, the WER of (a)-(d) is not.  Keep --utts small on a shared machine.

  . ./path.sh
  python bench/decode_speed.py --lang it --utts 4
  python bench/decode_speed.py --adapter_dir exp/whisper_base_lora_it_r32_qv_dec/adapter --data_dir dump/raw/it_test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_throughput import _cpu_model, _dirs, _peak_rss_mb, _prepare_data, _version, forwarded_args, worker_env

ROOT = Path(__file__).resolve().parents[1]
LORA_DEC = ROOT / "conf/lora/r32_qv_dec.yaml"
DECODE_CONFIG = ROOT / "conf/decode/default.yaml"
VARIANTS = {
    "a": "transformers + peft, unmerged",
    "b": "transformers, merged",
    "c": "CTranslate2 float32, merged",
    "d": "CTranslate2 int8, merged",
    "e": "faster-whisper int8, base model",
}
REFERENCE = "e"


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="whisper-base", help="--whisper_model: short name, local dir or Hub id.")
    parser.add_argument("--adapter_dir", type=Path, default=None, help="The adapter (default: a random one).")
    parser.add_argument("--lang", default="it", help="Language (synthesized, or that of --data_dir).")
    parser.add_argument("--data_dir", type=Path, default=None,
                        help="Kaldi dir (wav.scp, text, utt2lang) instead of synthesizing speech.")
    parser.add_argument("--utts", type=int, default=4, help="Utterances decoded by every variant.")
    parser.add_argument("--decode_config", type=Path, default=DECODE_CONFIG,
                        help="whisper_decode's search, safeguards and encoder_trim, (a)-(d) (the recipe's).")
    parser.add_argument("--batch_size", type=int, default=8, help="whisper_decode's batch size, (a)-(d).")
    parser.add_argument("--num_threads", type=int, default=2, help="torch / CTranslate2 threads, all variants.")
    parser.add_argument("--variants", default="abcde", help="Which variants to run, e.g. 'cde'.")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="Scratch dir (kept); default: a temporary dir, removed at the end.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


# --------------------------------------------------------------------------- worker side


def _decode_argv(args: argparse.Namespace, work: Path, key: str) -> list[str]:
    """whisper_decode's options for variants (a)-(d)."""
    common = ["--data_dir", str(_dirs(work)["data"]), "--whisper_model", args.model, "--out_dir",
              str(work / "decode" / key), "--decode_config", str(args.decode_config), "--batch_size",
              str(args.batch_size), "--num_threads", str(args.num_threads)]
    extra = {
        "a": ["--adapter_dir", str(work / "adapter")],
        "b": ["--adapter_dir", str(work / "adapter"), "--merge_adapter", "true"],
        "c": ["--decode_backend", "ct2", "--ct2_dir", str(work / "export" / "ct2_float32")],
        "d": ["--decode_backend", "ct2", "--ct2_dir", str(work / "export" / "ct2_int8")],
    }
    return common + extra[key]


def worker_decode(args: argparse.Namespace, work: Path, key: str) -> dict:
    """(a)-(d): the whisper_decode command (a child of this worker); its stats.json's timing and its hyps."""
    from espnet_adapters.data.kaldi import read_map

    command = [sys.executable, "-m", "espnet_adapters.bin.whisper_decode", *_decode_argv(args, work, key)]
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit(f"whisper_decode failed for ({key})")
    out = work / "decode" / key
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    return {"seconds": stats["decode_seconds"], "audio_seconds": stats["audio_seconds"],
            "backend": stats.get("decode_backend", "hf"), "hyps": read_map(out / "hyp", allow_empty_value=True)}


def worker_faster_whisper(args: argparse.Namespace, work: Path) -> dict:
    """(e): faster-whisper's transcribe on the base export, one utterance at a time, language forced."""
    from faster_whisper import WhisperModel

    from espnet_adapters.data.audio import read_audio
    from espnet_adapters.data.kaldi import read_map

    data = _dirs(work)["data"]
    wavs, langs = read_map(data / "wav.scp"), read_map(data / "utt2lang")
    audio = {utt: read_audio(entry, 16000, f"{data / 'wav.scp'}: {utt}") for utt, entry in wavs.items()}
    model = WhisperModel(str(work / "export_base" / "ct2_int8"), device="cpu", compute_type="int8",
                         cpu_threads=args.num_threads)
    hyps = {}
    start = time.perf_counter()
    for utt, samples in audio.items():
        segments, _ = model.transcribe(samples, language=langs[utt], task="transcribe", beam_size=1,
                                       without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
        hyps[utt] = " ".join(segment.text.strip() for segment in segments)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "audio_seconds": sum(len(s) for s in audio.values()) / 16000,
            "backend": "faster-whisper-int8", "hyps": hyps}


def run_worker(args: argparse.Namespace) -> None:
    """Run one variant and write its result (with peak RSS and load) into the work dir."""
    work, key = args.work_dir, args.worker
    result = worker_faster_whisper(args, work) if key == "e" else worker_decode(args, work, key)
    # (a)-(d) decode in a child (the whisper_decode command): its peak; (e) in this process
    result["peak_rss_mb"] = (_peak_rss_mb() if key == "e"
                             else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    result["load_1min"] = os.getloadavg()[0]
    (work / f"result.{key}.json").write_text(json.dumps(result), encoding="utf-8")


# --------------------------------------------------------------------------- parent side


def _spawn(key: str, argv: list[str], work: Path, env: dict[str, str]) -> dict:
    """Run one worker (a fresh interpreter); its log goes to work/logs/<key>.log."""
    log = work / "logs" / f"{key}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] ({key}) {VARIANTS[key]} ...", file=sys.stderr, flush=True)
    with log.open("w") as handle:
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--work_dir", str(work), "--worker", key]
        status = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if status != 0:
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]), file=sys.stderr)
        raise SystemExit(f"worker ({key}) failed (exit {status}); full log: {log}")
    return json.loads((work / f"result.{key}.json").read_text(encoding="utf-8"))


def _prepare_models(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """The adapter (given or random), its float32 and int8 exports and the base's int8 export; their seconds."""
    import torch

    from espnet_adapters.whisper.export import export_adapter

    torch.set_num_threads(args.num_threads)
    adapter = work / "adapter"
    if args.adapter_dir is not None:
        shutil.copytree(args.adapter_dir, adapter, dirs_exist_ok=True)
    elif not (adapter / "adapter_config.json").is_file():
        _random_adapter(args.model, adapter, args.decode_config)
    seconds = {}
    for name, adapter_dir, out, quantization in (("ct2_float32", adapter, "export", "float32"),
                                                 ("ct2_int8", adapter, "export", "int8"),
                                                 ("base ct2_int8", None, "export_base", "int8")):
        start = time.perf_counter()
        export_adapter(args.model, adapter_dir, work / out, quantization)
        seconds[name] = time.perf_counter() - start
    return seconds


def _random_adapter(whisper_model: str, out_dir: Path, decode_config: Path) -> None:
    """conf/lora/r32_qv_dec.yaml on the base, B weights random (peft starts them at 0: a no-op),
    recorded as trained with ``decode_config``'s encoder_trim (whisper_decode checks it)."""
    import torch

    from espnet_adapters.whisper.decode import DecodeOptions
    from espnet_adapters.whisper.lora import LoraSpec, apply_lora, save_adapter
    from espnet_adapters.whisper.model import load_whisper

    model, _ = load_whisper(whisper_model, torch.device("cpu"))
    peft_model = apply_lora(model, LoraSpec.from_yaml(LORA_DEC))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.01 * torch.randn(parameter.shape, generator=generator))
    save_adapter(peft_model, out_dir,
                 {"lang": None, "random": True, "encoder_trim": DecodeOptions.from_yaml(decode_config).encoder_trim})


def _wer(work: Path, hyps: dict[str, str]) -> float:
    """WER (%) of ``hyps`` on the data's text, both normalised per language as stage 8 does."""
    from espnet_adapters.data.kaldi import read_map
    from espnet_adapters.scoring.metrics import score_words
    from espnet_adapters.scoring.normalize import normalize_text

    data = _dirs(work)["data"]
    refs, langs = read_map(data / "text", allow_empty_value=True), read_map(data / "utt2lang")
    utts = sorted(refs)
    report = score_words(utts, [normalize_text(refs[u], langs[u]) for u in utts],
                         [normalize_text(hyps.get(u, ""), langs[u]) for u in utts])
    return report.total.error_rate


def _report(args: argparse.Namespace, work: Path, results: dict[str, dict], exports: dict[str, float],
            loads: tuple[str, str]) -> str:
    source = f"`{args.data_dir}`" if args.data_dir else f"espeak-ng {args.lang} (espnet_adapters.data.synth)"
    adapter = (f"`{args.adapter_dir}`" if args.adapter_dir
               else "a random r32 q/v decoder LoRA (WER of (a)-(d) meaningless)")
    lines = [
        f"Decoding speed, {args.model} + {adapter}, {args.utts} utterances ({source}), greedy, "
        f"batch {args.batch_size} for (a)-(d), CPU.",
        "",
        f"torch {_version('torch')}, transformers {_version('transformers')}, peft {_version('peft')}, "
        f"ctranslate2 {_version('ctranslate2')}, faster-whisper {_version('faster-whisper')}, python "
        f"{platform.python_version()}; {args.num_threads} threads; CPU: {_cpu_model()} ({os.cpu_count()} logical "
        f"CPUs); load average {loads[0]} at start, {loads[1]} at end (column `load`: 1-min load average when the "
        "variant ended; above the thread count, other jobs competed for the CPU).",
        "",
        f"| variant | backend | RTF | utt/s | utt/s vs ({REFERENCE}) | peak RSS (MB) | RSS vs ({REFERENCE}) "
        "| WER % | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ref = results.get(REFERENCE)
    for key, r in results.items():
        utt_per_s = len(r["hyps"]) / r["seconds"]
        speed = f"{utt_per_s / (len(ref['hyps']) / ref['seconds']):.2f}x" if ref else "n/a"
        rss = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x" if ref else "n/a"
        lines.append(f"| ({key}) {VARIANTS[key]} | {r['backend']} | {r['seconds'] / r['audio_seconds']:.3f} "
                     f"| {utt_per_s:.2f} | {speed} | {r['peak_rss_mb']:.0f} | {rss} | {_wer(work, r['hyps']):.1f} "
                     f"| {r['load_1min']:.1f} |")
    lines += ["", "One-off exports (merge + convert, export_adapter): "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in exports.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prepare data and models, run the variants one after the other, print the table."""
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    variants = [key for key in VARIANTS if key in args.variants]
    if not variants or set(args.variants) - set(VARIANTS):
        parser.error(f"--variants: letters of 'abcde', got {args.variants!r}")
    if min(args.utts, args.batch_size, args.num_threads) < 1:
        parser.error("--utts, --batch_size and --num_threads must be >= 1")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="decode_speed."))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = worker_env(args.num_threads)
    passed = forwarded_args(argv)
    start_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        _prepare_data(args, work, env)
        exports = _prepare_models(args, work)
        results = {key: _spawn(key, passed, work, env) for key in variants}
        end_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(_report(args, work, results, exports, (start_load, end_load)))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
