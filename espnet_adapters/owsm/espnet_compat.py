"""The two things ``import espnet2`` needs on our install, in one place.

espnet 202511 on torch 2.13.0+cpu (measured; ../shared/notes/espnet-owsm.md):

1. ``import espnet2.tasks.s2t`` imports torchaudio at module level (the
   enhancement beamformer behind the default frontend), and PyPI has no
   torchaudio that loads with this torch: its newest wheel pins an older,
   CUDA torch.  S2T never calls it, so an import-only stand-in
   (``shims/torchaudio``, which fails loudly if anything is used) goes on
   ``sys.path`` when, and only when, a real torchaudio cannot be imported.
   Whisper processes never see it: only OWSM code calls :func:`prepare`.
2. ``g2p_en`` (imported by ESPnet's text frontends) calls ``nltk.download`` at
   import time, which needs the network and prints errors offline.  ``NLTK_DATA``
   points at ``tools/nltk_data``, where tools/install.sh puts empty placeholders
   of the two resources it looks for (S2T uses neither).

ESPnet's own entry points run through :mod:`espnet_adapters.bin.espnet_run`,
which calls :func:`prepare` and then the module, so that child processes
(ESPnet's DDP workers, data loaders) inherit the same environment.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent / "shims"
MAIN_ROOT = Path(__file__).resolve().parents[2]
NLTK_DATA = MAIN_ROOT / "tools" / "nltk_data"
# The resources g2p_en looks up at import time (placeholders are enough for S2T).
NLTK_RESOURCES = ("taggers/averaged_perceptron_tagger_eng.zip", "corpora/cmudict.zip")


def _real_torchaudio_loads() -> bool:
    if importlib.util.find_spec("torchaudio") is None:
        return False
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        return False
    return not getattr(torchaudio, "STAND_IN", False)


def prepare() -> None:
    """Make ``import espnet2...`` work offline on this install; idempotent, call before importing espnet2."""
    if not _real_torchaudio_loads() and str(SHIM_DIR) not in sys.path:
        sys.modules.pop("torchaudio", None)
        sys.path.insert(0, str(SHIM_DIR))
        # Spawned children (ESPnet's DDP workers) import by PYTHONPATH, not by our sys.path.
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(SHIM_DIR), os.environ.get("PYTHONPATH"))))
    if "NLTK_DATA" not in os.environ and all((NLTK_DATA / name).is_file() for name in NLTK_RESOURCES):
        os.environ["NLTK_DATA"] = str(NLTK_DATA)


def write_nltk_placeholders(root: Path = NLTK_DATA) -> None:
    """Empty zip files where g2p_en looks for its NLTK resources (tools/install.sh)."""
    import zipfile

    for name in NLTK_RESOURCES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            with zipfile.ZipFile(path, "w"):
                pass
