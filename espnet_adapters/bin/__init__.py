"""Command-line entry points: ``python -m espnet_adapters.bin.<name> --help``."""
