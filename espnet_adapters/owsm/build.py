"""Build, pack and adapt OWSM models with ESPnet's own S2T task.

* :func:`init_model` writes the ``config.yaml`` ESPnet's trainer would write for a
  model preset (``conf/owsm/*.yaml``) plus freshly initialised weights, without
  training (``s2t_train --dry_run``): a packable random model, which the tests use
  as their OWSM (stage 5 trains the tiny model with ``s2t_train`` itself).
* :func:`pack_model` packs a config + weights (+ BPE model and statistics) with
  ``espnet2.bin.pack s2t``, the layout of every released OWSM.
* :func:`attach_lora` puts a trained LoRA adapter onto a loaded base model.  This
  is the only way this project decodes an adapter: ESPnet's own loader rebuilds
  the model from the adapter's config and loads the adapter-only checkpoint with
  ``strict=False``, which silently keeps a *random* base (measured: 506% WER,
  no error).  Here the base comes from the pretrained weights, and every LoRA
  weight of the adapter must match a LoRA layer of the model, and vice versa.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from espnet_adapters.owsm.espnet_compat import prepare
from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

LORA_KEYS = ("lora_A", "lora_B")


def s2t_task() -> Any:
    """ESPnet's S2TTask class (imported on first use: ~12 s of imports)."""
    prepare()
    from espnet2.tasks.s2t import S2TTask

    return S2TTask


def init_model(preset: Path, token_list: Path, bpe_model: Path, stats_file: Path, out_dir: Path,
               seed: int = 0) -> tuple[Path, Path]:
    """``out_dir/config.yaml`` and ``out_dir/init.pth`` for the model preset; returns both paths."""
    task = s2t_task()
    task.main(cmd=[
        "--dry_run", "true", "--config", str(preset), "--token_list", str(token_list), "--token_type", "bpe",
        "--bpemodel", str(bpe_model), "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats_file}",
        "--output_dir", str(out_dir), "--ngpu", "0", "--seed", str(seed),
    ])
    torch.manual_seed(seed)
    model, _ = task.build_model_from_file(out_dir / "config.yaml", None, "cpu")
    weights = out_dir / "init.pth"
    torch.save(model.state_dict(), weights)
    return out_dir / "config.yaml", weights


def pack_model(root: Path, config: Path, model_file: Path, extra: list[Path], out_zip: Path) -> Path:
    """Pack like a released OWSM (``espnet2.bin.pack s2t``): meta.yaml, config, weights, extras.

    Paths are relative to ``root``, as in an ESPnet recipe directory: the archive
    names and the paths inside config.yaml (``bpemodel``, the statistics) must be
    the same relative paths, so that the model zoo rewrites them on unpacking.
    """
    prepare()
    from espnet2.bin.pack import main as pack_main

    members = [config, model_file, *extra]
    absolute = [str(path) for path in members if path.is_absolute()]
    if absolute:
        raise UserInputError(f"pack: give paths relative to {root}, not {absolute}")
    referenced = yaml.safe_load((root / config).read_text(encoding="utf-8"))
    for key, value in (("bpemodel", referenced.get("bpemodel")),
                       ("normalize_conf.stats_file", (referenced.get("normalize_conf") or {}).get("stats_file"))):
        if value is not None and Path(value) not in members:
            raise UserInputError(f"{root / config}: {key} is {value}, which is not packed ({[str(m) for m in members]})")
    out_zip = out_zip.absolute()
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_zip.with_name(f".{out_zip.name}.tmp.zip")
    cmd = ["s2t", "--s2t_train_config", str(config), "--s2t_model_file", str(model_file), "--outpath", str(tmp)]
    for path in extra:
        cmd += ["--option", str(path)]
    with contextlib.chdir(root):
        pack_main(cmd)
    tmp.replace(out_zip)
    return out_zip


def lora_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LoRA weights of a state dict (an adapter_only checkpoint holds nothing else)."""
    return {key: value for key, value in state.items() if key.rsplit(".", 1)[-1] in LORA_KEYS}


def attach_lora(model: torch.nn.Module, adapter_conf: Mapping[str, Any], adapter_file: Path) -> None:
    """Add LoRA layers (``adapter_conf`` of the adapter's config) to ``model`` and load their weights.

    ``model`` holds the pretrained base weights.  The result is in eval mode with
    the low-rank updates merged into the base weights (loralib), so decoding costs
    what the base costs.
    """
    prepare()
    from espnet2.layers.create_adapter import create_adapter

    state = torch.load(adapter_file, map_location="cpu", weights_only=True)
    adapter = lora_state(state)
    if not adapter:
        raise UserInputError(f"{adapter_file}: no LoRA weights (lora_A/lora_B) in this checkpoint")
    create_adapter(model, "lora", dict(adapter_conf))
    model.train()  # loralib: unmerged while the weights change
    expected = {key: value.shape for key, value in lora_state(model.state_dict()).items()}
    missing, unexpected = sorted(set(expected) - set(adapter)), sorted(set(adapter) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(adapter) if adapter[key].shape != expected[key])
    if missing or unexpected or reshaped:
        raise UserInputError(
            f"{adapter_file}: LoRA weights do not fit the model built from adapter_conf: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}), "
            f"{len(reshaped)} of another shape (e.g. {reshaped[:2]}: a different rank?)"
        )
    model.load_state_dict(adapter, strict=False)
    model.eval()  # loralib merges B·A·alpha/r into the base weights
    logger.info("attached %d LoRA tensors from %s", len(adapter), adapter_file)
