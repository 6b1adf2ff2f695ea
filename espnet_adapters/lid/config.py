"""``conf/lid/*.yaml``: one dataclass for the LID model's shape and its training.

One file per model variant keeps a run reproducible from its config alone; the
training options sit beside the model ones because they are tuned together
(an MLP with dropout wants more epochs than a linear probe).  Loaded with
:class:`espnet_adapters.utils.config.YamlConfig`: unknown keys are errors naming
the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from espnet_adapters.utils.config import YamlConfig

FRONTENDS = ("none", "cnn")
POOLINGS = ("mean", "attention")
CLASSIFIERS = ("linear", "mlp")


@dataclass(frozen=True)
class LidConfig(YamlConfig):
    """A LID model and how to train it; the defaults are ``conf/lid/mlp_mean.yaml``."""

    frontend: str = "none"  # none | cnn: 1-D convolutions over the encoder frames before pooling
    cnn_channels: int = 128
    cnn_kernel: int = 5  # odd, in encoder frames (20 ms each)
    cnn_layers: int = 2
    pooling: str = "mean"  # mean | attention (learned weights over the valid frames)
    attention_dim: int = 128
    classifier: str = "mlp"  # linear | mlp
    hidden: tuple[int, ...] = (256, 128)  # mlp only
    dropout: float = 0.3  # after every hidden layer (mlp, cnn)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    max_epochs: int = 30  # an epoch: every language sampled as often as the largest one
    patience: int = 5  # stop after N epochs without a better dev accuracy; 0 = never
    calibrate: bool = True  # temperature scaling fitted on dev after training (espnet_adapters.lid.calibration)
    # Random crops while training (short audio): with probability crop_prob an utterance is replaced by
    # a random stretch of its frames, of a length drawn uniformly from crop_seconds [min, max]; () = off.
    crop_seconds: tuple[float, ...] = ()
    crop_prob: float = 0.5
    source: str = "<default LidConfig>"

    def __post_init__(self) -> None:
        choices = (("frontend", FRONTENDS), ("pooling", POOLINGS), ("classifier", CLASSIFIERS))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("cnn_channels", "cnn_kernel", "cnn_layers", "attention_dim", "batch_size", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cnn_kernel % 2 == 0:
            raise ValueError(f"cnn_kernel must be odd (frames stay aligned with the mask), got {self.cnn_kernel}")
        if self.classifier == "mlp" and (not self.hidden or min(self.hidden) < 1):
            raise ValueError(f"hidden must be a non-empty list of sizes >= 1 for an mlp, got {list(self.hidden)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.crop_seconds and (len(self.crop_seconds) != 2 or not 0 < self.crop_seconds[0] <= self.crop_seconds[1]):
            raise ValueError(f"crop_seconds must be [min, max] with 0 < min <= max, got {list(self.crop_seconds)}")
        if not 0.0 <= self.crop_prob <= 1.0:
            raise ValueError(f"crop_prob must be in [0, 1], got {self.crop_prob}")
        if not self.lr > 0 or self.weight_decay < 0 or self.patience < 0:
            raise ValueError("lr must be > 0, weight_decay and patience >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LidConfig:
        """Rebuild from :meth:`as_dict` output (as stored in ``lid.json``) read back from JSON (lists -> tuples)."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})
