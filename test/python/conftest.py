"""Shared pytest fixtures.

``HF_HUB_OFFLINE`` is set before anything imports ``huggingface_hub``: no test may
download from the Hub, and a missing local file must fail loudly instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.recipe import recipe_env

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


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real single-node SLURM cluster (tools/slurm/start.sh), stopped by PID afterwards.

    Yields the environment in which sbatch/squeue (and cmd_backend=slurm) reach it.
    Skipped only when the SLURM packages are missing; tools/install.sh installs them.
    """
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed (tools/install.sh installs slurmctld slurmd slurm-client munge)")
    # Not under pytest's tmp dir: munged refuses a socket below a directory others cannot search.
    state = Path(tempfile.mkdtemp(prefix="slurm-pytest.", dir="/tmp"))
    started = subprocess.run([str(MAIN_ROOT / "tools/slurm/start.sh"), str(state)], capture_output=True, text=True)
    assert started.returncode == 0, f"tools/slurm/start.sh failed:\n{started.stdout}\n{started.stderr}"
    env = recipe_env() | {"SLURM_CONF": str(state / "slurm.conf"), "cmd_backend": "slurm"}
    try:
        yield env
    finally:
        subprocess.run([str(MAIN_ROOT / "tools/slurm/stop.sh"), str(state)], check=False, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
