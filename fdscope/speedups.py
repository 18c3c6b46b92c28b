"""The optional C accelerator `_fdscope_speedups` (csrc/fdscope_speedups.c), or None.

pip builds it when a C compiler and the Python headers are present (setup.py marks it optional);
without it every caller runs its pure-Python twin, which stays the reference the tests compare
the C functions with. FDSCOPE_NO_SPEEDUPS=1 forces the Python code (tests, bug hunting)."""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("FDSCOPE_NO_SPEEDUPS"):
        return None
    try:
        import _fdscope_speedups
    except ImportError:
        return None
    return _fdscope_speedups


C: ModuleType | None = _load()
