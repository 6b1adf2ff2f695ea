"""ESPnet train configs for LoRA on a pretrained OWSM, from the model's own config.yaml.

Fine-tuning must keep the pretrained model exactly as it was built: its
architecture, token list, BPE model, frontend and normalization statistics.  So
the train config is the model's ``config.yaml`` with only these replaced:

* the adapter: ``use_adapter: true``, ``adapter: lora``, ``adapter_conf`` from
  one of our ``conf/lora/*.yaml`` (the same files the Whisper path reads), with
  Whisper's module names mapped to ESPnet's (``q_proj`` -> ``linear_q``,
  ``fc1`` -> ``w_1`` ...) and expanded into full module names of the chosen
  stack and layers, because ESPnet matches target names by suffix
  (``linear_q`` alone would adapt the encoder and both decoder attentions);
* ``freeze_param`` = every top-level module: ESPnet does *not* freeze the base
  for LoRA by itself (measured: 100% of the parameters trained); loralib's
  parameters are created after the freeze and stay trainable;
* ``save_strategy: adapter_only`` (checkpoints hold the LoRA weights only);
* the optimizer, scheduler, batch and epoch settings of a ``conf/owsm/*.yaml``
  train preset, and the S2T preprocessor's augmentations off
  (``text_prev_apply_prob: 0``, ``time_apply_prob: 0``: our utterances have
  neither previous text nor timestamps).

Run-specific keys of the original training (data paths, shapes, output dir,
distributed settings) are dropped; the stage passes its own on the command line.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.whisper.lora import LoraSpec

# Whisper/peft module names (conf/lora/*.yaml) -> ESPnet's.
ESPNET_NAMES = {
    "q_proj": "linear_q", "k_proj": "linear_k", "v_proj": "linear_v", "out_proj": "linear_out",
    "fc1": "w_1", "fc2": "w_2",
}
# The sub-blocks holding those layers in each stack.  Attention: E-Branchformer's
# encoder calls it "attn", Conformer/Transformer "self_attn"; the decoder has
# self- and cross-attention ("src_attn", Whisper's encoder_attn).  Feed-forward:
# plus the macaron one in (E-)Branchformer/Conformer encoders.  Names a model does
# not have match nothing; build_lora_model() checks the count.
SUB_BLOCKS = {
    ("encoder", "attention"): ("attn", "self_attn"),
    ("decoder", "attention"): ("self_attn", "src_attn"),
    ("encoder", "feed_forward"): ("feed_forward", "feed_forward_macaron"),
    ("decoder", "feed_forward"): ("feed_forward",),
}
# Keys of the original run that do not describe the model.
RUN_KEYS = (
    "output_dir", "train_data_path_and_name_and_type", "valid_data_path_and_name_and_type",
    "train_shape_file", "valid_shape_file", "fold_length", "ngpu", "dist_backend", "dist_init_method",
    "dist_world_size", "dist_rank", "local_rank", "dist_master_addr", "dist_master_port", "dist_launcher",
    "multiprocessing_distributed", "distributed", "init_param", "collect_stats", "write_collected_feats",
    "pretrain_path", "resume", "config", "print_config", "dry_run", "use_wandb", "wandb_project",
    "wandb_id", "wandb_entity", "wandb_name", "sharded_ddp", "use_deepspeed", "deepspeed_config",
    "required", "version",  # written by the trainer, not options
)
# Keys a train preset (conf/owsm/lora_*.yaml) may set.
TRAIN_KEYS = (
    "optim", "optim_conf", "scheduler", "scheduler_conf", "batch_type", "batch_size", "batch_bins",
    "valid_batch_size", "accum_grad", "max_epoch", "patience", "grad_clip", "num_workers", "seed",
    "best_model_criterion", "keep_nbest_models", "num_iters_per_epoch", "log_interval", "use_amp",
    "train_dtype", "early_stopping_criterion", "val_scheduler_criterion", "unused_parameters", "num_att_plot",
)


def espnet_targets(spec: LoraSpec, base: Mapping[str, Any]) -> list[str]:
    """Full ESPnet module names for ``spec`` on the model described by config ``base``."""
    targets = []
    stacks = ("encoder", "decoder") if spec.where == "both" else (spec.where,)
    for stack in stacks:
        blocks = (base.get(f"{stack}_conf") or {}).get("num_blocks")
        if not isinstance(blocks, int) or blocks < 1:
            raise UserInputError(f"the model's config has no {stack}_conf.num_blocks: cannot place LoRA in the {stack}")
        layers = range(blocks) if spec.layers is None else sorted(set(spec.layers))
        if max(layers) >= blocks:
            raise UserInputError(f"{spec.source}: layers {list(layers)} but the {stack} has {blocks} blocks")
        for name in spec.target_modules:
            if name not in ESPNET_NAMES:
                raise UserInputError(
                    f"{spec.source}: target module {name!r} has no ESPnet equivalent (known: {' '.join(ESPNET_NAMES)})")
            kind = "feed_forward" if name.startswith("fc") else "attention"
            for layer in layers:
                for block in SUB_BLOCKS[(stack, kind)]:
                    targets.append(f"{stack}.{stack}s.{layer}.{block}.{ESPNET_NAMES[name]}")
    return targets


def lora_train_config(base: Mapping[str, Any], spec: LoraSpec, preset: Mapping[str, Any]) -> dict[str, Any]:
    """The train config for ``spec`` on the pretrained model whose config is ``base``."""
    unknown = sorted(set(preset) - set(TRAIN_KEYS))
    if unknown:
        raise UserInputError(f"train preset: keys {unknown} are not training settings (allowed: {' '.join(TRAIN_KEYS)})")
    if base.get("preprocessor") not in (None, "s2t"):
        raise UserInputError(f"not an OWSM (S2T) config: preprocessor {base.get('preprocessor')!r}")
    config = {key: copy.deepcopy(value) for key, value in base.items() if key not in RUN_KEYS}
    config.update(copy.deepcopy(dict(preset)))
    config["use_adapter"] = True
    config["adapter"] = "lora"
    config["adapter_conf"] = {
        "rank": spec.r, "alpha": int(spec.lora_alpha), "dropout_rate": float(spec.lora_dropout),
        "target_modules": espnet_targets(spec, base),
    }
    config["save_strategy"] = "adapter_only"
    modules = ("frontend", "specaug", "normalize", "preencoder", "encoder", "postencoder", "decoder", "ctc")
    config["freeze_param"] = [name for name in modules if name == "ctc" or base.get(name) not in (None, "none")]
    preprocessor = dict(config.get("preprocessor_conf") or {})
    preprocessor.update(text_prev_apply_prob=0.0, time_apply_prob=0.0)
    config["preprocessor_conf"] = preprocessor
    return config


def lora_parameter_count(model_file: Path, adapter_conf: Mapping[str, Any]) -> int:
    """LoRA parameters ``adapter_conf`` adds to the model of ``model_file``: r x (in + out) per matched Linear.

    Target names the model lacks match nothing (see SUB_BLOCKS); none matching at all is an error.
    """
    state = torch.load(model_file, map_location="cpu", weights_only=True, mmap=True)
    rank = int(adapter_conf["rank"])
    shapes = [state[f"{name}.weight"].shape for name in adapter_conf["target_modules"] if f"{name}.weight" in state]
    if not shapes:
        raise UserInputError(f"{model_file}: none of the LoRA targets exists ({adapter_conf['target_modules'][:3]} ...)")
    return sum(rank * (out_features + in_features) for out_features, in_features in shapes)
