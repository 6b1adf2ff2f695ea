"""Atomic file output: readers never see a half-written file or directory.

Every stage writes through these helpers, so a killed job leaves either the old
output or nothing, and a re-run redoes exactly the unfinished work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, TextIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str | os.PathLike[str], target: Path, mode: int) -> None:
    """Give a temp file or dir normal permissions (mkstemp/mkdtemp make them private), then rename."""
    os.chmod(tmp, mode & ~_umask())
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[TextIO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
        _publish(tmp, target, 0o666)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory under a temporary name; swap it into place on success.

    An existing ``path`` is replaced only once the new one is complete.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            _publish(tmp, target, 0o777)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _publish(tmp, target, 0o777)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
