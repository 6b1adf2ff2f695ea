"""Pretrained OWSM models: where they come from and what they are made of.

A model is named the way ESPnet users name it, and resolved by espnet_model_zoo:

* a Hub name (``espnet/owsm_v3.1_ebf_base``): downloaded into the cache when
  online; offline (``HF_HUB_OFFLINE=1``, our default) found in a Hugging Face
  cache layout ``<cache>/models--espnet--owsm_v3.1_ebf_base/snapshots/<sha>/``;
* a zip made by ``espnet2.bin.pack s2t`` (a released model, or the tiny OWSM
  that tools/owsm/make_tiny_owsm.sh trains): unpacked into the cache.

Either way the pack's ``meta.yaml`` names the config and the model file; nothing
here assumes file names.  A zip is checked before espnet_model_zoo sees it: its
own errors for a pack without meta.yaml or with a missing file are an assertion
or a KeyError from deep inside.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from espnet_adapters.utils.cli import UserInputError

logger = logging.getLogger(__name__)

CONFIG_KEY = "s2t_train_config"
MODEL_KEY = "s2t_model_file"


@dataclass(frozen=True)
class PretrainedOwsm:
    """An unpacked OWSM: its training config and its weights (paths inside the cache)."""

    name: str
    config: Path
    model_file: Path

    def load_config(self) -> dict:
        """The model's own config.yaml (paths already rewritten to the cache by the model zoo)."""
        with self.config.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)


def check_pack(path: Path) -> None:
    """Refuse a zip that is not an ESPnet S2T pack, naming what is missing."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UserInputError(f"{path}: not a readable zip ({err})") from err
    with archive:
        names = set(archive.namelist())
        metas = [name for name in names if Path(name).name == "meta.yaml"]
        if not metas:
            raise UserInputError(f"{path}: no meta.yaml: not a pack made by espnet2.bin.pack")
        meta = yaml.safe_load(archive.read(metas[0])) or {}
    listed = {**(meta.get("yaml_files") or {}), **(meta.get("files") or {})}
    for key in (CONFIG_KEY, MODEL_KEY):
        if not listed.get(key):
            raise UserInputError(f"{path}: meta.yaml names no {key}: not an S2T (OWSM) pack")
    missing = [f"{key}={value}" for key, value in listed.items() if value and value not in names]
    if missing:
        raise UserInputError(f"{path}: meta.yaml lists files the zip does not hold: {', '.join(missing)}")


def _drop_stale_unpack(pack: Path, cache_dir: Path) -> None:
    """Forget the model zoo's unpacked copy of ``pack`` if the zip was rebuilt since.

    espnet_model_zoo caches a local zip by its *path* and never looks at it again,
    so a retrained tiny model would silently be decoded with the old weights.
    The pack's meta.yaml (it holds the packing time) tells the two apart.
    """
    from espnet_model_zoo.downloader import str_to_hash

    unpacked = cache_dir / str_to_hash(pack.absolute())
    cached_meta = unpacked / "meta.yaml"
    if not cached_meta.is_file():
        return
    with zipfile.ZipFile(pack) as archive:
        meta = archive.read(next(n for n in archive.namelist() if Path(n).name == "meta.yaml"))
    if yaml.safe_load(meta) != yaml.safe_load(cached_meta.read_bytes()):
        logger.info("%s changed since it was unpacked into %s: unpacking again", pack, unpacked)
        shutil.rmtree(unpacked)


def fetch_owsm(name: str, cache_dir: Path) -> PretrainedOwsm:
    """Resolve ``name`` (a pack zip or a Hub name) into an unpacked model under ``cache_dir``."""
    from espnet_model_zoo.downloader import ModelDownloader

    local = Path(name)
    if local.suffix == ".zip" or local.exists():
        if not local.is_file():
            raise UserInputError(
                f"{name}: not a file; a local OWSM is a zip made by espnet2.bin.pack "
                "(a Hugging Face cache is used by giving the Hub name and --owsm_cache)"
            )
        check_pack(local)
        _drop_stale_unpack(local, cache_dir)
    try:
        files = ModelDownloader(cache_dir).download_and_unpack(str(local.absolute()) if local.is_file() else name)
    except Exception as err:  # the model zoo and huggingface_hub raise many kinds
        hint = (" (offline: put the model in a Hugging Face cache layout under the cache dir, or set HF_HUB_OFFLINE=0)"
                if "/" in name and not local.exists() else "")
        raise UserInputError(f"cannot get OWSM model {name!r} into {cache_dir}: {err}{hint}") from err
    for key in (CONFIG_KEY, MODEL_KEY):
        if key not in files or not Path(files[key]).is_file():
            raise UserInputError(f"OWSM model {name!r}: its meta.yaml gives no existing {key} ({files.get(key)})")
    model = PretrainedOwsm(name, Path(files[CONFIG_KEY]), Path(files[MODEL_KEY]))
    logger.info("OWSM %s: config %s, weights %s", name, model.config, model.model_file)
    return model
