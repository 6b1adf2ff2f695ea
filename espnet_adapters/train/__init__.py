"""LoRA training of Whisper: data (``data.py``) and the loop (``trainer.py``).

The yaml config loader that used to live here is :mod:`espnet_adapters.utils.config`
(one mechanism for every config dataclass); its names stay importable from here.
"""

from __future__ import annotations

from espnet_adapters.utils.config import SOURCE_FIELD, load_yaml_config

__all__ = ["SOURCE_FIELD", "load_yaml_config"]
