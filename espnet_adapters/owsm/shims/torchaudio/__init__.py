"""Import-only stand-in for torchaudio, for ESPnet on a CPU torch (see espnet_compat.py).

ESPnet's S2T task imports torchaudio at module level through the enhancement
frontends (espnet2/enh/layers/beamformer_th.py) but never calls it.  PyPI has
no torchaudio build that loads with torch 2.13.0+cpu, so this module stands in:
importing it works, using anything from it raises an error saying why.
"""

STAND_IN = True


def __getattr__(name: str) -> object:
    raise ImportError(
        f"torchaudio.{name}: this is espnet-adapters' import-only torchaudio stand-in "
        "(espnet_adapters/owsm/shims); install a torchaudio matching your torch to use it"
    )
