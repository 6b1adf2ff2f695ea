"""Shared pytest fixtures.

``HF_HUB_OFFLINE`` is set before anything imports ``huggingface_hub``: no test may
download from the Hub, and a missing local file must fail loudly instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAIN_ROOT = Path(__file__).resolve().parents[2]
SHARED_WHISPER_BASE = MAIN_ROOT / "tools" / "models" / "whisper-base"


@pytest.fixture(scope="session")
def whisper_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformers Whisper base directory converted from the CT2 wheels.

    Reuses ``tools/models/whisper-base`` when it is a complete, current
    conversion (``python -m espnet_adapters.bin.convert_whisper_ct2 --out_dir
    tools/models/whisper-base``); otherwise converts once per session into a
    temporary directory (about 15 s), never touching the shared one.
    """
    from espnet_adapters.whisper.convert import convert_ct2_whisper, is_converted

    if is_converted(SHARED_WHISPER_BASE):
        return SHARED_WHISPER_BASE
    return convert_ct2_whisper(tmp_path_factory.mktemp("whisper") / "whisper-base")
