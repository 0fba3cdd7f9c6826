"""MediaHub: upload, check, clean, hash, resize, store, moderate and serve media."""

__version__ = "0.1.0"
