"""Shared test configuration. Area-specific helpers live in tests/<area>_support.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

if not sys.platform.startswith("linux"):
    pytest.skip("fdscope runs only on Linux", allow_module_level=True)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """invoke(*args) -> click Result, running the real `fdscope` group in-process."""
    from fdscope.cli.main import cli

    def _invoke(*args: str, **kw):
        return runner.invoke(cli, list(args), catch_exceptions=False, **kw)

    return _invoke


def _use(monkeypatch: pytest.MonkeyPatch, module) -> None:
    """Make fdscope use the C module `module` (None: the pure-Python code) through its one seam."""
    from fdscope import speedups

    backend = speedups.CBackend(module) if module is not None else speedups.Backend()
    monkeypatch.setattr(speedups, "backend", backend)


def require_speedups():
    """The C accelerator module, or skip. CI sets FDSCOPE_REQUIRE_SPEEDUPS=1: there a missing
    build fails instead, so the C code cannot go untested."""
    from fdscope.speedups import load_c

    C = load_c()
    if C is None:
        if os.environ.get("FDSCOPE_REQUIRE_SPEEDUPS"):
            pytest.fail("the C accelerator _fdscope_speedups is not built")
        pytest.skip("the C accelerator _fdscope_speedups is not built")
    return C


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a stale build of the C accelerator: one left in the source tree (an
    editable install or build_ext --inplace) that is older than its source."""
    try:
        import _fdscope_speedups
    except ImportError:
        return
    root = Path(__file__).resolve().parent.parent
    source = root / "csrc" / "fdscope_speedups.c"
    built = Path(_fdscope_speedups.__file__).resolve()
    if source.exists() and root in built.parents and built.stat().st_mtime < source.stat().st_mtime:
        pytest.exit(f"{built.name} in the source tree is older than {source.relative_to(root)}: "
                    "rebuild it (pip install -e .) or remove it", returncode=2)


@pytest.fixture(params=["c", "python"])
def speedups(request, monkeypatch):
    """Run the test twice: with the C accelerator and with the pure-Python code."""
    module = require_speedups() if request.param == "c" else None
    _use(monkeypatch, module)
    return module


@pytest.fixture
def no_speedups(monkeypatch):
    _use(monkeypatch, None)
