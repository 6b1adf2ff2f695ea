#!/usr/bin/env python3
"""Training throughput and peak memory: a notebook-style LoRA loop vs this project's trainer.

Four ways to train a rank-32 LoRA on Whisper, on the same utterances, batch size,
timed steps and CPU threads:

  (a) naive    the way a typical notebook (and the seed project) does it: a plain PyTorch
               loop that reads the audio and runs WhisperProcessor at every step (30 s
               zero-padded log-mel), Whisper + peft LoRA r=32 alpha=64 dropout 0.05 with
               target_modules=["q_proj", "v_proj"] (which hits encoder AND decoder), AdamW.
  (b) ours     espnet_adapters' Trainer with encoder+decoder LoRA (conf/lora/r32_qv_both.yaml)
               on dumped trimmed log-mel features (stage 4 of the recipe).
  (c) ours     the Trainer with decoder-only LoRA (conf/lora/r32_qv_dec.yaml) on the encoder
      cached   cache (stage 5): the frozen encoder never runs during training; the decoder
               cross-attends to all 1500 frames of the 30 s window (encoder_trim null, the
               default until issue 13).
  (d) ours     (c) with the recipe's encoder_trim (conf/decode/default.yaml, 1 s): the decoder
      trimmed  sees the speech frames + 1 s only, as training and decoding do today.

Why: (a) vs (b) isolates the data pipeline (features once vs audio + extractor each step,
length-bucketed batches); (a) vs (c) is what the recipe's default buys on a CPU, where the
encoder's 30 s window dominates a step; (c) vs (d) is what encoder_trim buys.  (c)'s and (d)'s
cache (and the feature dump of (b)-(d)) is a one-off cost, reported per utterance and amortised
over --epochs passes over the data.

Each variant runs in its own subprocess (this script with a hidden --worker option), so
its peak RSS (VmHWM, which includes loading the model) is its own.  Throughput is utterances
per second over the --steps timed optimizer steps, after --warmup untimed ones.  Dev
evaluation, checkpoints and logging are not part of any variant.

The default data: --utts Hindi sentences spoken by espeak-ng (espnet_adapters.data.synth)
into a temporary directory; or --data_dir, a Kaldi dir with wav.scp, text and utt2lang
(its first --utts utterances).  Prints a markdown table (with versions, threads and CPU)
to paste into a README.  Run from the repository root after `. ./path.sh`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
LORA_BOTH = ROOT / "conf/lora/r32_qv_both.yaml"
LORA_DEC = ROOT / "conf/lora/r32_qv_dec.yaml"
TRAIN_CONFIG = ROOT / "conf/train/default.yaml"
VARIANTS = {
    "a": "naive loop: audio + WhisperProcessor each step, peft q/v enc+dec",
    "b": "our Trainer, dumped features, LoRA q/v enc+dec",
    "c": "our Trainer, encoder cache, LoRA q/v decoder only, whole 30 s window",
    "d": "our Trainer, encoder cache, LoRA q/v decoder only, encoder_trim (speech + 1 s)",
}
DECODE_CONFIG = ROOT / "conf/decode/default.yaml"


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--model", default="whisper-base", help="--whisper_model: short name, local dir or Hub id.")
    parser.add_argument("--batch_size", type=int, default=4, help="Utterances per step, all variants.")
    parser.add_argument("--steps", type=int, default=6, help="Timed optimizer steps per variant.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first (allocator, lazy init).")
    parser.add_argument("--num_threads", type=int, default=2, help="torch (and OMP/MKL) threads, all variants.")
    parser.add_argument("--utts", type=int, default=16, help="Utterances to train on (cycled).")
    parser.add_argument("--lang", default="hi", help="Language (synthesized, or that of --data_dir).")
    parser.add_argument("--data_dir", type=Path, default=None,
                        help="Kaldi dir (wav.scp, text, utt2lang) instead of synthesizing speech.")
    parser.add_argument("--epochs", type=int, default=10, help="Epochs to amortise the one-off costs over.")
    parser.add_argument("--variants", default="abcd", help="Which variants to run, e.g. 'cd'.")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="Scratch dir (kept); default: a temporary dir, removed at the end.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


# --------------------------------------------------------------------------- worker side


def worker_env(num_threads: int) -> dict[str, str]:
    """The environment of a benchmark's worker processes: fixed thread counts, the repo importable, offline."""
    threads = str(num_threads)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}


def forwarded_args(argv: list[str] | None) -> list[str]:
    """The command line the workers re-parse, without --work_dir (_spawn adds its own)."""
    passed = list(sys.argv[1:] if argv is None else argv)
    if "--work_dir" in passed:
        del passed[passed.index("--work_dir") : passed.index("--work_dir") + 2]
    return [a for a in passed if not a.startswith("--work_dir=")]


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_steps(args: argparse.Namespace, step: Callable[[], object]) -> list[float]:
    """Run --warmup + --steps steps; the seconds of the timed ones."""
    times = []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        step()
        if index >= args.warmup:
            times.append(time.perf_counter() - start)
        print(f"step {index + 1}/{args.warmup + args.steps}: {time.perf_counter() - start:.2f} s", file=sys.stderr)
    return times


def _dirs(work: Path) -> dict[str, Path]:
    return {"data": work / "data" / "train", "feats": work / "feats", "cache": work / "cache"}


def worker_dump(args: argparse.Namespace, work: Path) -> dict:
    """Stage 4: trimmed log-mel of every utterance (as dump_feats does it, in-process after the imports)."""
    from espnet_adapters.whisper.features import dump_features

    d = _dirs(work)
    start = time.perf_counter()
    dump_features(d["data"], None, args.model, d["feats"])
    return {"seconds": time.perf_counter() - start}


def worker_cache(args: argparse.Namespace, work: Path) -> dict:
    """Stage 5: the encoder cache, as cache_encoder does it, with the model load timed apart."""
    import torch
    from tqdm import tqdm

    from espnet_adapters.data.kaldi import read_map
    from espnet_adapters.whisper.encoder_cache import (
        claim_cache_dir, encode_batches, encoder_fingerprint, shard_path, torch_encode, write_shard,
    )
    from espnet_adapters.whisper.features import iter_feats_scp
    from espnet_adapters.whisper.model import load_whisper

    torch.set_num_threads(args.num_threads)
    d = _dirs(work)
    feats_scp = d["feats"] / "feats.scp"
    start = time.perf_counter()
    model, _ = load_whisper(args.model, torch.device("cpu"))
    loaded = time.perf_counter()
    fingerprint = encoder_fingerprint(args.model, feats_scp)
    claim_cache_dir(d["cache"], fingerprint, args.model)
    keys = list(read_map(feats_scp))
    shape = (model.config.max_source_positions, model.config.d_model)
    with tqdm(total=len(keys), disable=True) as progress:  # cache_encoder's default batch of 8
        outputs = encode_batches(torch_encode(model.get_encoder()), iter_feats_scp(feats_scp, keys), 8, progress)
        write_shard(shard_path(d["cache"], 1), outputs, keys, shape, fingerprint)
    return {"load_seconds": loaded - start, "seconds": time.perf_counter() - loaded, "utts": len(keys)}


def worker_naive(args: argparse.Namespace, work: Path) -> dict:
    """(a): deliberately the notebook way; only resolve_model/read_audio come from this project."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from espnet_adapters.data.audio import read_audio
    from espnet_adapters.data.kaldi import read_map
    from espnet_adapters.whisper.model import resolve_model

    torch.set_num_threads(args.num_threads)
    source = resolve_model(args.model)
    processor = WhisperProcessor.from_pretrained(source)
    processor.tokenizer.set_prefix_tokens(language=args.lang, task="transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(source)
    torch.manual_seed(1)
    config = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], bias="none")
    model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    d = _dirs(work)
    wavs, texts = read_map(d["data"] / "wav.scp"), read_map(d["data"] / "text")
    rows = [(wavs[utt], texts[utt]) for utt in texts]
    sot = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    position = 0

    def step() -> None:
        nonlocal position
        batch = [rows[(position + k) % len(rows)] for k in range(args.batch_size)]
        position += args.batch_size
        audio = [read_audio(entry, 16000, entry) for entry, _ in batch]  # datasets' Audio(16000) decodes per access
        features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        tokens = processor.tokenizer([text for _, text in batch], padding=True, return_tensors="pt")
        labels = tokens.input_ids.masked_fill(tokens.attention_mask == 0, -100)
        if (labels[:, 0] == sot).all():  # the usual collator: the model prepends the start token itself
            labels = labels[:, 1:]
        loss = model(input_features=features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    times = _timed_steps(args, step)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"times": times, "trainable": trainable}


def worker_ours(args: argparse.Namespace, work: Path, cached: bool, trimmed: bool = False) -> dict:
    """(b)/(c)/(d): train_lora's model, data and Trainer; its own optimizer step, timed.

    ``trimmed``: the decoder sees the frames encoder_trim keeps (conf/decode/default.yaml), else
    the whole window."""
    import torch

    from espnet_adapters.train.data import load_dataset
    from espnet_adapters.train.trainer import TrainConfig, Trainer, seed_everything
    from espnet_adapters.whisper.decode import DecodeOptions
    from espnet_adapters.whisper.lora import LoraSpec, apply_lora, count_parameters
    from espnet_adapters.whisper.model import load_whisper

    torch.set_num_threads(args.num_threads)
    d = _dirs(work)
    spec = LoraSpec.from_yaml(LORA_DEC if cached else LORA_BOTH)
    cfg = dataclasses.replace(TrainConfig.from_yaml(TRAIN_CONFIG), batch_size=args.batch_size, grad_accum=1)
    decode_opts = DecodeOptions.from_yaml(DECODE_CONFIG)
    if not trimmed:
        decode_opts = dataclasses.replace(decode_opts, encoder_trim=None)
    model, processor = load_whisper(args.model, torch.device("cpu"))
    seed_everything(1)
    model = apply_lora(model, spec)
    train_set = load_dataset(
        d["data"], lang=args.lang, tokenizer=processor.tokenizer,
        max_target_positions=model.config.max_target_positions, feats_scp=d["feats"] / "feats.scp",
        encoder_cache=d["cache"] if cached else None, model_source=args.model,
    )
    trainer = Trainer(model, processor.tokenizer, train_set, train_set, cfg, work / "exp", lang=args.lang,
                      device=torch.device("cpu"), seed=1, signature={}, meta={}, decode_opts=decode_opts)
    model.train()  # as Trainer.run() does; run() itself would also evaluate and checkpoint
    stream = trainer._micro_batches()
    times = _timed_steps(args, lambda: trainer._train_step(stream))
    return {"times": times, "trainable": count_parameters(model)[0]}


def run_worker(args: argparse.Namespace) -> None:
    work = args.work_dir
    name = args.worker
    jobs = {"dump": worker_dump, "cache": worker_cache, "a": worker_naive,
            "b": lambda a, w: worker_ours(a, w, cached=False), "c": lambda a, w: worker_ours(a, w, cached=True),
            "d": lambda a, w: worker_ours(a, w, cached=True, trimmed=True)}
    result = jobs[name](args, work)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["load_1min"] = os.getloadavg()[0]  # other jobs on the machine distort the timings
    (work / f"result.{name}.json").write_text(json.dumps(result))


# --------------------------------------------------------------------------- parent side


def _spawn(name: str, argv: list[str], work: Path, env: dict[str, str]) -> dict:
    """Run one worker (a fresh interpreter); its log goes to work/logs/<name>.log."""
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--work_dir", str(work), "--worker", name]
        status = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if status != 0:
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]), file=sys.stderr)
        raise SystemExit(f"worker {name} failed (exit {status}); full log: {log}")
    print(f"[{time.strftime('%H:%M:%S')}] {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return json.loads((work / f"result.{name}.json").read_text())


def _prepare_data(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    """work/data/train: --utts synthesized utterances, or the first --utts of --data_dir."""
    out = _dirs(work)["data"]
    out.mkdir(parents=True, exist_ok=True)
    if args.data_dir is None:
        cmd = [sys.executable, "-m", "espnet_adapters.bin.synth_corpus", "--lang", args.lang,
               "--sentences", str(ROOT / "local/sentences" / f"{args.lang}.txt"),
               "--config", str(ROOT / "conf/synth.yaml"),
               "--data_dir", str(work / "data"), "--audio_dir", str(work / "audio"),
               "--train_utts", str(args.utts), "--splits", "train"]
        log = work / "logs" / "synth.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            if subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode != 0:
                raise SystemExit(f"synthesis failed; see {log}")
        source = work / "data" / f"{args.lang}_train"
    else:
        source = args.data_dir
    utts = [line.split(maxsplit=1)[0] for line in (source / "text").read_text(encoding="utf-8").splitlines()]
    keep = set(sorted(utts)[: args.utts])
    if len(keep) < args.utts:
        raise SystemExit(f"{source}: only {len(keep)} utterances, --utts {args.utts}")
    for name in ("wav.scp", "text", "utt2lang"):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (out / name).write_text("".join(ln for ln in lines if ln.split(maxsplit=1)[0] in keep), encoding="utf-8")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _report(args: argparse.Namespace, results: dict[str, dict], loads: tuple[str, str]) -> str:
    utt_per_s = {k: args.batch_size * len(r["times"]) / sum(r["times"]) for k, r in results.items() if "times" in r}
    rss = {k: results[k]["peak_rss_mb"] for k in utt_per_s}
    source = f"`{args.data_dir}`" if args.data_dir else f"espeak-ng {args.lang} (espnet_adapters.data.synth)"
    lines = [
        f"Training throughput, {args.model}, batch {args.batch_size}, {args.steps} timed steps after "
        f"{args.warmup} warm-up, {args.utts} utterances ({source}), fp32 CPU.",
        "",
        f"torch {_version('torch')}, transformers {_version('transformers')}, peft {_version('peft')}, "
        f"python {platform.python_version()}; {args.num_threads} threads; CPU: {_cpu_model()} "
        f"({os.cpu_count()} logical CPUs); load average {loads[0]} at start, {loads[1]} at end "
        "(column `load`: 1-min load average when the variant ended; above the thread count, other jobs "
        "competed for the CPU and the timings are inflated).",
        "",
        "| variant | trainable params | s/step (min) | utt/s | utt/s vs (a) | peak RSS (MB) | RSS vs (a) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def vs_a(values: dict[str, float], key: str) -> str:
        return f"{values[key] / values['a']:.2f}x" if "a" in values else "n/a"

    for key in utt_per_s:
        r = results[key]
        per_step = sum(r["times"]) / len(r["times"])
        lines.append(f"| ({key}) {VARIANTS[key]} | {r['trainable'] / 1e6:.2f} M "
                     f"| {per_step:.2f} ({min(r['times']):.2f}) | {utt_per_s[key]:.2f} | {vs_a(utt_per_s, key)} "
                     f"| {rss[key]:.0f} | {vs_a(rss, key)} | {r['load_1min']:.1f} |")
    lines.append("")
    dump = results.get("dump")
    if dump:
        lines.append(f"One-off, feature dump (b, c, d): {dump['seconds']:.1f} s for {args.utts} utterances "
                     f"= {dump['seconds'] / args.utts:.3f} s/utt.")
    cache = results.get("cache")
    if cache:
        lines.append(f"One-off, encoder cache (c, d): {cache['seconds']:.1f} s for {cache['utts']} utterances "
                     f"= {cache['seconds'] / cache['utts']:.3f} s/utt (+ {cache['load_seconds']:.1f} s model load "
                     f"per job), peak RSS {cache['peak_rss_mb']:.0f} MB.")
    if dump:
        parts = []
        for key in ("b", "c", "d"):
            if key not in utt_per_s or (key in "cd" and not cache):
                continue
            once = dump["seconds"] / args.utts + (cache["seconds"] / cache["utts"] if key in "cd" else 0.0)
            eff = 1.0 / (1.0 / utt_per_s[key] + once / args.epochs)
            ratio = f" ({eff / utt_per_s['a']:.2f}x (a))" if "a" in utt_per_s else ""
            parts.append(f"({key}) {eff:.2f} utt/s{ratio}")
        if parts:
            lines.append(f"Amortised over {args.epochs} epochs (one-off s/utt / {args.epochs} added to each "
                         f"utterance's training time): {', '.join(parts)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    letters = "".join(VARIANTS)
    variants = [v for v in letters if v in args.variants]
    if not variants or set(args.variants) - set(letters):
        parser.error(f"--variants: letters of {letters!r}, got {args.variants!r}")
    if min(args.batch_size, args.steps, args.utts, args.epochs, args.num_threads) < 1 or args.warmup < 0:
        parser.error("--batch_size, --steps, --utts, --epochs, --num_threads must be >= 1, --warmup >= 0")
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="train_throughput."))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = worker_env(args.num_threads)
    # The workers re-parse the same options (_spawn adds --work_dir and --worker).
    passed = forwarded_args(argv)
    start_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        _prepare_data(args, work, env)
        results: dict[str, dict] = {}
        if set(variants) & set("bcd"):
            results["dump"] = _spawn("dump", passed, work, env)
        if set(variants) & set("cd"):
            results["cache"] = _spawn("cache", passed, work, env)
        for key in variants:
            results[key] = _spawn(key, passed, work, env)
        end_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(_report(args, results, (start_load, end_load)))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
