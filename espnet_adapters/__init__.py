"""espnet-adapters: language-specific LoRA adapters on multilingual ASR models.

The package holds the logic behind the recipe stages; the shell scripts under
``egs2/`` and ``utils/`` only connect paths.  Sub-packages are split by concern:

- :mod:`espnet_adapters.data`: Kaldi data directories, audio I/O, the synthetic corpus.
- :mod:`espnet_adapters.whisper`: the CTranslate2 -> transformers conversion and decoding.
- :mod:`espnet_adapters.scoring`: text normalisation, WER/CER, ``result.txt`` and ``RESULTS.md``.
- :mod:`espnet_adapters.bin`: ``argparse`` entry points, one per recipe step.
"""

__version__ = "0.1.0"
