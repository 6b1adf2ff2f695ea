"""Experiment tracking of a training run: TensorBoard, Weights & Biases, or none (``--tracker``).

Every tracker gets the same scalars at the same steps: ``train/loss``,
``train/lr`` every step, ``dev/loss``, ``dev/wer``, ``dev/cer``, ``dev/corr`` at
every evaluation (step 0 is the base model), and the run's configuration.

- ``tensorboard``: event files in ``<out_dir>/tensorboard`` (``tensorboard --logdir exp``).
- ``wandb``: a W&B run in ``<out_dir>/wandb``, **offline** unless ``WANDB_MODE`` says
  otherwise (so nothing needs a network or an account; ``wandb sync <out_dir>/wandb/offline-run-*``
  uploads it later).  Project ``WANDB_PROJECT`` (default ``espnet-adapters``), run name the
  experiment dir's name; a resumed training continues the same run (its id is kept in
  ``<out_dir>/wandb_run_id``).
- ``none``: nothing is logged beyond the log file and ``train_stats.json``.

Only the main process of a data-parallel run tracks.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "wandb", "none")
WANDB_ID_FILE = "wandb_run_id"


class Tracker(Protocol):
    def log(self, scalars: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class NoTracker:
    def log(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    def __init__(self, out_dir: Path, resumed_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # heavy import, only when training

        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resumed_step)

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, out_dir: Path, config: Mapping[str, Any], resumed: bool) -> None:
        import wandb

        out_dir.mkdir(parents=True, exist_ok=True)
        id_file = out_dir / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if resumed and id_file.is_file() else secrets.token_hex(4)
        id_file.write_text(run_id + "\n", encoding="utf-8")
        (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "espnet-adapters"), name=out_dir.name, id=run_id,
            dir=str(out_dir), config=dict(config), mode=os.environ.get("WANDB_MODE", "offline"), resume="allow",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self) -> None:
        self.run.finish()


def make_tracker(kind: str, out_dir: Path, config: Mapping[str, Any], resumed_step: int | None) -> Tracker:
    """The tracker ``kind`` (:data:`TRACKERS`) of a run in ``out_dir``; ``resumed_step``: None for a fresh run."""
    if kind == "tensorboard":
        return TensorBoardTracker(out_dir, resumed_step)
    if kind == "wandb":
        return WandbTracker(out_dir, config, resumed_step is not None)
    if kind == "none":
        return NoTracker()
    raise ValueError(f"tracker {kind!r}: expected one of {', '.join(TRACKERS)}")
