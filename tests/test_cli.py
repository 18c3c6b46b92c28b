"""CLI conventions shared by every command: errors, exit codes, version, platform."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from privilege_support import run_as_nobody

import fdscope
from fdscope.errors import EXIT_ACCESS, EXIT_NO_PROCESS, EXIT_UNSUPPORTED, EXIT_USAGE


def free_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


def test_version(invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert fdscope.__version__ in result.stdout


def test_help_has_examples_and_exit_codes(invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "Exit codes" in result.stdout
    assert "Examples:" in invoke("limits", "--help").stdout


def test_unknown_pid_exit_3(invoke) -> None:
    pid = free_pid()
    result = invoke("limits", "--pid", str(pid))
    assert result.exit_code == EXIT_NO_PROCESS
    assert result.stderr == f"fdscope: no process with pid {pid}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("bad", ["abc", "-5", "0", "1.5", ""])
def test_non_numeric_pid_is_usage_error(invoke, bad: str) -> None:
    result = invoke("limits", "--pid", bad)
    assert result.exit_code == EXIT_USAGE
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdscope: ")
    assert "Traceback" not in result.stderr


def test_unknown_command_and_option(invoke) -> None:
    for args in (["frobnicate"], ["limits", "--frob"]):
        result = invoke(*args)
        assert result.exit_code == EXIT_USAGE
        assert result.stderr.startswith("fdscope: ") and result.stderr.count("\n") == 1


def test_non_linux_exits_5(invoke, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    result = invoke("limits")
    assert result.exit_code == EXIT_UNSUPPORTED
    assert "only on Linux" in result.stderr and "darwin" in result.stderr


def test_internal_error_is_one_line(invoke, monkeypatch) -> None:
    import fdscope.limits

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(fdscope.limits, "gather_limits", boom)
    result = invoke("limits")
    assert result.exit_code == 1
    assert result.stderr.startswith("fdscope: internal error: RuntimeError: kaboom")
    assert result.stderr.count("\n") == 1


def entry_point() -> str:
    exe = Path(sys.executable).parent / "fdscope"
    if not exe.exists():
        pytest.skip("fdscope entry point not installed next to this python")
    return str(exe)


def test_installed_entry_point_subprocess() -> None:
    exe = entry_point()
    out = subprocess.run([exe, "limits", "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '"schema": "fdscope.limits/1"' in out.stdout
    bad = subprocess.run([exe, "limits", "--pid", str(free_pid())], capture_output=True, text=True)
    assert bad.returncode == EXIT_NO_PROCESS and "Traceback" not in bad.stderr
    mod = subprocess.run([sys.executable, "-m", "fdscope", "--version"], capture_output=True, text=True)
    assert mod.returncode == 0 and fdscope.__version__ in mod.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_exit_4() -> None:
    """As `nobody`, reading root's /proc/PID/fd is refused (ptrace access mode, proc(5))."""
    code, err = run_as_nobody(["limits", "--pid", str(os.getpid())])
    assert code == EXIT_ACCESS, err
    line = err.strip()
    assert "\n" not in line and line.startswith("fdscope: permission denied reading")
    assert f"/proc/{os.getpid()}/fd" in line and "ptrace" in line
