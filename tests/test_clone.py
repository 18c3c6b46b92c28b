"""The test suite passes wherever the repository lives: here, a copy of the tree in a 0700
directory (a home directory such as root's, which other users cannot enter) runs the tests
that drop privileges to another user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRIVILEGE_TESTS = [
    "tests/test_cli.py::test_permission_denied_exit_4",
    "tests/test_inspect_cli.py::test_permission_denied_as_nobody",
    "tests/test_speedups.py::test_entry_point_errors_keep_their_exit_codes",
]


def _tracked_files() -> list[str]:
    if shutil.which("git") and (ROOT / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
        return [f for f in out.stdout.decode().split("\0") if f and (ROOT / f).is_file()]
    return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
            and not {".venv", ".git", "build", "__pycache__"} & set(p.relative_to(ROOT).parts)]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_privilege_tests_pass_from_a_copy_in_a_0700_directory(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    repo = home / "fdscope"
    for name in _tracked_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *PRIVILEGE_TESTS], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert f"{len(PRIVILEGE_TESTS)} passed" in out.stdout
    # the copy's own code ran, not this tree's
    assert str(repo) in subprocess.run(
        [sys.executable, "-c", "import fdscope; print(fdscope.__file__)"], cwd=repo, env={
            **env, "PYTHONPATH": str(repo)}, capture_output=True, text=True).stdout
