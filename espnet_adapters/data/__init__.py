"""Data preparation: Kaldi data directories (:mod:`espnet_adapters.data.kaldi`) and audio I/O."""
