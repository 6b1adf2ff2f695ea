"""Scoring: text normalisation, WER/CER with sclite-like ``result.txt``, ``RESULTS.md``.

- :mod:`espnet_adapters.scoring.normalize`: the one normaliser applied to both
  references and hypotheses (safe for Indic scripts, unlike Whisper's).
- :mod:`espnet_adapters.scoring.metrics`: word/character alignments, counts and
  the ``result.txt`` / ``result.cer.txt`` writers.
- :mod:`espnet_adapters.scoring.per_utt`: per-utterance counts, ``score/per_utt.tsv``.
- :mod:`espnet_adapters.scoring.bootstrap`: paired bootstrap confidence intervals
  of the difference between two systems on the same utterances (pure NumPy).
- :mod:`espnet_adapters.scoring.results`: collects ``scores.json`` (and
  ``per_utt.tsv``) files of an ``exp/`` tree into ``RESULTS.md``.
"""
