"""matplotlib for jobs without a display: the Agg pyplot, and PNGs written atomically."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from espnet_adapters.utils.fileio import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot_module() -> ModuleType:
    """pyplot with the file-only backend: jobs run without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> None:
    """Lay out, write ``path`` as PNG under a temporary name, rename, close the figure."""
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    pyplot_module().close(fig)
