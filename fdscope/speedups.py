"""The optional C accelerator `_fdscope_speedups` (csrc/fdscope_speedups.c), or None.

pip builds it when a C compiler and the Python headers are present (setup.py marks it optional);
without it every caller runs its pure-Python twin, which stays the reference the tests compare
the C functions with. FDSCOPE_NO_SPEEDUPS=1 forces the Python code (tests, bug hunting); CI sets
FDSCOPE_REQUIRE_SPEEDUPS=1 so that tests fail rather than skip when the module is missing."""

from __future__ import annotations

import os
from types import ModuleType

# The C module's FDSCOPE_SPEEDUPS_API this code is written against; a build from other sources
# (a development venv not reinstalled after a C change) is left unused rather than miscalled.
API = 8


def _load() -> ModuleType | None:
    if os.environ.get("FDSCOPE_NO_SPEEDUPS"):
        return None
    try:
        import _fdscope_speedups
    except ImportError:
        return None
    return _fdscope_speedups if getattr(_fdscope_speedups, "API", None) == API else None


C: ModuleType | None = _load()
