#!/usr/bin/env python3
"""Run one of ESPnet's own entry points (espnet2.bin.*) on this install.

  python -m espnet_adapters.bin.espnet_run espnet2.bin.s2t_train --config conf.yaml ...
  python -m espnet_adapters.bin.espnet_run espnet2.bin.pack s2t --asr_config ...

Identical to ``python -m <module> <args>`` after the two import fixes of
espnet_adapters/owsm/espnet_compat.py (torchaudio stand-in on a CPU torch;
NLTK_DATA placeholders so nothing is downloaded).  The OWSM stages launch ESPnet's
training and statistics through this, as ESPnet's s2t.sh launches them directly.
"""

from __future__ import annotations

import runpy
import sys

from espnet_adapters.owsm.espnet_compat import prepare


def main() -> None:
    """Prepare the environment, then run the module as __main__ with the remaining arguments."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    module = sys.argv[1]
    if not module.startswith("espnet2."):
        raise SystemExit(f"espnet_run: {module!r} is not an ESPnet module (espnet2.*)")
    prepare()
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
