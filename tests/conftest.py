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
