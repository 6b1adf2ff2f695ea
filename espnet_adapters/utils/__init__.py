"""Small helpers shared by every entry point (logging, atomic writes, errors)."""
