"""Shared test configuration. Area-specific helpers live in tests/<area>_support.py."""

from __future__ import annotations

import sys

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
    """Point every user of fdscope.speedups.C at `module` (None: the pure-Python code)."""
    import fdscope.inspect
    import fdscope.proc
    import fdscope.readahead
    import fdscope.render.inspect

    for mod in (fdscope.proc, fdscope.inspect, fdscope.readahead, fdscope.render.inspect):
        monkeypatch.setattr(mod, "C", module)


def require_speedups():
    """The C accelerator, or skip. CI sets FDSCOPE_REQUIRE_SPEEDUPS=1: there a missing build
    fails instead, so the C code cannot go untested."""
    import os

    from fdscope.speedups import C

    if C is None:
        if os.environ.get("FDSCOPE_REQUIRE_SPEEDUPS"):
            pytest.fail("the C accelerator _fdscope_speedups is not built")
        pytest.skip("the C accelerator _fdscope_speedups is not built")
    return C


@pytest.fixture(params=["c", "python"])
def speedups(request, monkeypatch):
    """Run the test twice: with the C accelerator and with the pure-Python code."""
    module = require_speedups() if request.param == "c" else None
    _use(monkeypatch, module)
    return module


@pytest.fixture
def no_speedups(monkeypatch):
    _use(monkeypatch, None)
