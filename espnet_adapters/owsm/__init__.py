"""OWSM (Open Whisper-style Speech Models) through ESPnet's own S2T task and LoRA adapters."""
