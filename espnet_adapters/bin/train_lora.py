#!/usr/bin/env python3
"""Train a language-specific LoRA adapter for Whisper (one language, one adapter).

Inputs: a training and a dev Kaldi dir (``text``, ``utt2lang``; every utterance
in ``--lang``), their trimmed log-mel ``feats.scp`` (stage 3 of the recipe,
``espnet_adapters.bin.dump_feats``) and, for decoder-only adapters, optionally
their encoder caches (``espnet_adapters.bin.cache_encoder``): the encoder then
never runs during training, ~8x faster on a CPU.  An adapter that changes the
encoder (``where: encoder|both`` in the LoRA config) cannot use a cache, and
neither can SpecAugment (it masks the features the encoder would read).

Configs: ``--lora_config conf/lora/<preset>.yaml`` (rank, alpha, dropout,
target modules, encoder/decoder/both, layers), ``--train_config
conf/train/<name>.yaml`` (batch, lr, schedule, steps, evaluation, precision,
gradient checkpointing, SpecAugment) and ``--decode_config
conf/decode/<name>.yaml`` (the dev decoding, which selects the adapter: give
it the test decoding's config; its flags ``--beam_size``, ``--max_new_tokens``,
the safeguards, ``--decode_seed`` and ``--encoder_trim`` override it, as in the
decoders; the batch size is the train config's ``dev_batch_size``).
``encoder_trim`` also cuts the encoder outputs the decoder sees in training,
and is recorded in the adapter's lora_meta.json: the decoders refuse to decode
the adapter with another value.  Unknown keys are errors.

Writes into ``--out_dir`` (``exp/<model>_lora_<lang>_<tag>``):
  adapter/             best adapter by dev WER: adapter_config.json + adapter_model.safetensors
                       (loads with peft's PeftModel.from_pretrained(base, dir)) + lora_meta.json
                       (language, configs, data, encoder_trim, the dev decoding options, scores)
  checkpoints/last/    resume state, replaced atomically every save_every steps
  train.log            this job's log (appended across resumes)
  tensorboard/         (--tracker tensorboard, the default) event files: train/loss, train/lr,
                       dev/loss, dev/wer, dev/cer, dev/corr
  wandb/, wandb_run_id (--tracker wandb) the same scalars and the config in an offline W&B run
                       (WANDB_MODE=online to upload live; else `wandb sync` it later)
  curves.png           train loss, dev loss and dev WER against the step
  train_stats.json     steps, best dev WER and its step, parameter counts, seconds, utts/s, history
  train.done           written last; the same command is then a no-op

Interrupted (even by kill -9)?  Run the same command again: it resumes from
checkpoints/last with the optimizer, scheduler, RNGs and data position, and
continues the loss curve the uninterrupted run would have drawn.  With other
options (model, data, configs, decoding options, seed) the old outputs are
removed and training starts over.

Several GPUs, several nodes: ``--ngpu N`` (N > 1) and/or ``--num_nodes M``
(M > 1, SLURM, the command started once per node) relaunch this command under
torchrun, one process per GPU, with DistributedDataParallel.  ``batch_size`` in
the training config is the global batch, split among the processes, so the
updates (and the resume state) are those of a single-process run; raise it to
use the extra GPUs.  ``--ddp_cpu_procs N`` runs N processes on the CPU (gloo):
the same code path, for testing.  Rank 0 writes every output.  See
``espnet_adapters/train/distributed.py`` for the rendezvous.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from espnet_adapters.train.data import dataset_digest, load_dataset
from espnet_adapters.train.distributed import Dist, distributed_session, launched, torchrun_command
from espnet_adapters.train.tracking import TRACKERS
from espnet_adapters.train.trainer import TrainConfig, Trainer, prepare_out_dir, seed_everything
from espnet_adapters.utils.cli import LOG_FORMAT, UserInputError, make_parser, run_main
from espnet_adapters.whisper.decode import DecodeOptions, add_search_arguments, decode_options
from espnet_adapters.whisper.inputs import speech_margin
from espnet_adapters.whisper.lora import (
    LoraSpec, apply_lora, count_parameters, encoder_cut_layer, target_regex, touches_encoder,
)
from espnet_adapters.whisper.model import load_whisper, resolve_model

logger = logging.getLogger(__name__)

MODULE = "espnet_adapters.bin.train_lora"  # what torchrun runs in every process


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = make_parser(__doc__)
    parser.add_argument("--lang", required=True, help="Language code of the adapter (hi, it, pa, te ...).")
    parser.add_argument("--train_dir", type=Path, required=True, help="Kaldi dir of the training set.")
    parser.add_argument("--train_feats", type=Path, required=True, help="feats.scp of the training set.")
    parser.add_argument(
        "--train_encoder_cache", type=Path, default=None,
        help="Encoder-output cache of the training set (decoder-only adapters; with encoder_top N, of the states "
             "below the top N layers: cache_encoder --encoder_top N); default: run the encoder.",
    )
    parser.add_argument("--dev_dir", type=Path, required=True, help="Kaldi dir of the dev set (loss, WER).")
    parser.add_argument("--dev_feats", type=Path, required=True, help="feats.scp of the dev set.")
    parser.add_argument("--dev_encoder_cache", type=Path, default=None, help="Encoder-output cache of the dev set.")
    parser.add_argument("--whisper_model", default="whisper-base", help="Short name, local dir or Hub id.")
    parser.add_argument("--lora_config", type=Path, default=Path("conf/lora/r32_qv_dec.yaml"), help="LoRA preset.")
    parser.add_argument("--train_config", type=Path, default=Path("conf/train/default.yaml"), help="Training config.")
    parser.add_argument("--out_dir", type=Path, required=True, help="Experiment dir (adapter/, logs, checkpoints).")
    parser.add_argument("--ngpu", type=int, default=0,
                        help="GPUs per node: 0 trains on the CPU, 1 on a CUDA device, N > 1 on N (DDP via torchrun).")
    parser.add_argument("--num_nodes", type=int, default=1,
                        help="Nodes (> 1: SLURM, this command run once per node; see distributed.py).")
    parser.add_argument("--master_port", type=int, default=None,
                        help="Rendezvous port of a multi-node run; default: derived from SLURM_JOB_ID.")
    parser.add_argument("--ddp_cpu_procs", type=int, default=1,
                        help="With --ngpu 0: data-parallel processes on the CPU (gloo); > 1 is for testing DDP.")
    parser.add_argument("--num_threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--seed", type=int, default=1, help="Seeds LoRA init, data order, dropout, SpecAugment.")
    parser.add_argument("--tracker", choices=TRACKERS, default="tensorboard",
                        help="Experiment tracking (espnet_adapters/train/tracking.py); not part of the run's signature.")
    parser.add_argument("--verbose", type=int, default=0, help="1 = debug logging.")
    # The dev decoding's search, as the test decoding's (--decode_seed: the fallback's sampling).
    add_search_arguments(parser, seed_flag="--decode_seed", skip=("batch_size",))
    return parser


def _add_log_file(path: Path) -> None:
    """Append this job's log to ``path`` as well (a resumed run continues the same log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)


def _check_options(args: argparse.Namespace, spec: LoraSpec) -> None:
    """Refuse an encoder cache for an adapter that changes the encoder, before loading anything.

    An ``encoder_top`` adapter takes a cache of the states below its top layers.
    """
    caches = [flag for flag in ("train_encoder_cache", "dev_encoder_cache") if getattr(args, flag) is not None]
    if caches and touches_encoder(spec) and not spec.encoder_top:
        raise UserInputError(
            f"{spec.source}: this adapter changes the encoder (where: {spec.where}), so its outputs cannot come "
            f"from --{caches[0]}; drop the cache options or use a decoder-only preset"
        )


def dev_decode_options(args: argparse.Namespace, cfg: TrainConfig) -> DecodeOptions:
    """The dev decoding's options: ``--decode_config`` and the search flags, in batches of ``dev_batch_size``."""
    return dataclasses.replace(decode_options(args, "forced"), batch_size=cfg.dev_batch_size)


def _train_signature(cfg: TrainConfig) -> dict[str, Any]:
    """The training config as signed: ``install_below_base`` only when set (it came later; a finished run
    made before it existed is the same run as one with it off)."""
    values = cfg.as_dict()
    if not values["install_below_base"]:
        del values["install_below_base"]
    return values


def _signature(
    args: argparse.Namespace, source: str, spec: LoraSpec, cfg: TrainConfig, decode: DecodeOptions
) -> dict[str, Any]:
    """What makes two runs the same run (for resuming and for the done marker): the data by content.

    The decoding options select the adapter (dev WER) and ``encoder_trim``
    changes the training itself: another decoding rule retrains.
    """
    return {
        "model": source,
        "lang": args.lang,
        "lora": spec.as_dict(),
        "train": _train_signature(cfg),
        "seed": args.seed,
        "decode": decode.as_dict(),
        "train_data": dataset_digest(args.train_dir, args.train_feats, args.train_encoder_cache),
        "dev_data": dataset_digest(args.dev_dir, args.dev_feats, args.dev_encoder_cache),
    }


def _relaunch_if_parallel(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Replace this process by torchrun when the job wants several processes (and torchrun is not running it).

    ``exec``, not a child process: the scheduler's signals (and kill) reach torchrun, which passes them on.
    """
    if args.ngpu < 0 or args.num_nodes < 1 or args.ddp_cpu_procs < 1:
        raise UserInputError("--ngpu must be >= 0, --num_nodes and --ddp_cpu_procs >= 1")
    if args.ngpu > 0 and args.ddp_cpu_procs > 1:
        raise UserInputError(f"--ddp_cpu_procs {args.ddp_cpu_procs} runs CPU processes: it needs --ngpu 0")
    procs = args.ngpu if args.ngpu > 0 else args.ddp_cpu_procs
    if launched() or (procs == 1 and args.num_nodes == 1):
        return
    if args.ngpu > torch.cuda.device_count():
        raise UserInputError(f"--ngpu {args.ngpu} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    command = torchrun_command(MODULE, argv, nproc_per_node=procs, num_nodes=args.num_nodes,
                               master_port=args.master_port)
    logger.info("relaunching under torchrun: %s", shlex.join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)


def run(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """Relaunch under torchrun if asked for several processes, then train in this one."""
    _relaunch_if_parallel(args, argv)
    with distributed_session(args.ngpu) as (dist, device):
        train(args, dist, device)


def train(args: argparse.Namespace, dist: Dist, device: torch.device) -> None:
    """Load configs, model and data; train; leave the outputs listed in the module doc."""
    if dist.is_main:
        _add_log_file(args.out_dir / "train.log")
    else:  # the same messages as rank 0's, which torchrun would interleave with them
        logging.getLogger().setLevel(logging.WARNING)
    spec = LoraSpec.from_yaml(args.lora_config)
    cfg = TrainConfig.from_yaml(args.train_config)
    decode_opts = dev_decode_options(args, cfg)
    _check_options(args, spec)
    source = resolve_model(args.whisper_model)
    signature = _signature(args, source, spec, cfg, decode_opts)
    if dist.on_main(functools.partial(prepare_out_dir, args.out_dir, signature)):
        logger.info("%s: training already finished; nothing to do", args.out_dir)
        return
    torch.set_num_threads(args.num_threads)
    # Loaded on the CPU in fp32 and moved after: the master weights stay fp32
    # even on CUDA; fp16/bf16 come from autocast.
    model, processor = load_whisper(args.whisper_model, torch.device("cpu"))
    # A seed per rank: each draws its own dropout and SpecAugment masks.  The LoRA
    # init is rank 0's on every rank (DDP broadcasts it), i.e. the single-process one.
    seed_everything(args.seed + dist.rank)
    model = apply_lora(model, spec).to(device)
    trainable, total = count_parameters(model)

    load = functools.partial(
        load_dataset, lang=args.lang, tokenizer=processor.tokenizer,
        max_target_positions=model.config.max_target_positions, model_source=args.whisper_model,
        speech_margin=speech_margin(decode_opts),
    )
    cut_layer = encoder_cut_layer(spec, model.config.encoder_layers)
    train_set = load(args.train_dir, feats_scp=args.train_feats, encoder_cache=args.train_encoder_cache,
                     cut_layer=cut_layer)
    dev_set = load(args.dev_dir, feats_scp=args.dev_feats, encoder_cache=args.dev_encoder_cache, cut_layer=cut_layer)
    meta = {
        "base_model": source,
        "lang": args.lang,
        **spec.as_dict(),
        "target_regex": target_regex(spec, model.config.encoder_layers),
        "trainable_params": trainable,
        "total_params": total,
        "lora_config": str(args.lora_config),
        "train_config": str(args.train_config),
        "train_dir": str(args.train_dir),
        "train_utts": len(train_set),
        "seed": args.seed,
        # decoders refuse this adapter with another encoder_trim (it saw other encoder frames)
        "encoder_trim": decode_opts.encoder_trim,
        # and with another encoder_span (window: the encoder on the 30 s window; speech: on the speech + encoder_trim)
        "encoder_span": decode_opts.encoder_span,
        # and decode it with the frames cut before this encoder layer (encoder_top; None: after the encoder)
        "encoder_cut_layer": cut_layer,
        "decode_config": None if args.decode_config is None else str(args.decode_config),
        "dev_decode": decode_opts.as_dict(),
    }
    trainer = Trainer(model, processor.tokenizer, train_set, dev_set, cfg, args.out_dir, lang=args.lang,
                      device=device, seed=args.seed, signature=signature, meta=meta, decode_opts=decode_opts,
                      dist=dist, cut_layer=cut_layer, tracker=args.tracker)
    state = trainer.run()
    logger.info("done: %d steps, best dev WER %.2f%% at step %d -> %s", state.step, state.best_wer,
                state.best_step, args.out_dir / "adapter")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m espnet_adapters.bin.train_lora --help``."""
    args = sys.argv[1:] if argv is None else list(argv)
    return run_main(get_parser(), functools.partial(run, argv=args), args)


if __name__ == "__main__":
    raise SystemExit(main())
