"""fdscope: inspect how Linux processes use file descriptors."""

__version__ = "0.1.0"
