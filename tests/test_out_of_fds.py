"""fdscope itself out of file descriptors (`ulimit -n` set low): one line on stderr naming the
limit, exit 1; never a traceback, a KeyError, or a probe verdict blamed on the kernel."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys

import pytest

from fdscope.errors import OutOfFds
from fdscope.proc import Proc

HOLDER = ("import os, sys\n"
          "b = os.open(os.devnull, os.O_RDONLY)\n"
          "fds = [os.dup(b) for _ in range(3000)]\n"
          "print('ready', flush=True)\n"
          "sys.stdin.read()\n")


def _soft(n: int):
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    return lower


def fdscope(args: list[str], soft: int, entry: bool = False) -> subprocess.CompletedProcess[str]:
    exe = [os.path.join(os.path.dirname(sys.executable), "fdscope")] if entry else \
        [sys.executable, "-m", "fdscope"]
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=_soft(soft))


def _one_line_out_of_fds(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("fdscope: out of file descriptors")
    assert "RLIMIT_NOFILE" in r.stderr and "ulimit -n" in r.stderr


@pytest.fixture(scope="module")
def big_target():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 3100:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} < 3100")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=_soft(3100))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_inspect_of_a_big_target_under_ulimit_5(big_target: int) -> None:
    """The console script's read-ahead holds an fd while the imports need one: EMFILE during
    the imports was a traceback. Five fds (the least an interpreter starts with: four do not
    import site) are enough for the whole report: one directory fd and one file at a time."""
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "fdscope")):
        pytest.skip("fdscope entry point not installed next to this python")
    r = fdscope(["inspect", str(big_target), "--json"], 5, entry=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    assert doc["summary"]["open_fds"] >= 3000 and not doc["partial"]


def test_probe_stale_under_ulimit_20() -> None:
    """stale dup()s its fd above a gap of 16 free numbers: F_DUPFD beyond the soft limit is
    EINVAL, and the probe then died on KeyError 'orig'. It raises its own soft limit."""
    r = fdscope(["probe", "stale"], 20)
    assert r.returncode == 0, r.stderr
    assert "matches" in r.stdout and "KeyError" not in r.stderr


def test_probes_out_of_fds_are_not_deviations() -> None:
    r = fdscope(["probe", "exclusive"], 6)
    _one_line_out_of_fds(r)
    assert "deviates" not in r.stdout


def test_the_cli_boundary_names_the_limit(invoke, monkeypatch) -> None:
    import fdscope.limits

    def emfile(*a: object, **k: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(fdscope.limits, "gather_limits", emfile)
    result = invoke("limits")
    assert result.exit_code == 1
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert result.stderr.startswith("fdscope: out of file descriptors: fdscope reached its "
                                    f"soft RLIMIT_NOFILE of {soft} (EMFILE)")
    monkeypatch.setattr(fdscope.limits, "gather_limits",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENFILE, "x")))
    result = invoke("limits")
    assert result.exit_code == 1 and "fs.file-max" in result.stderr


def test_proc_translates_emfile() -> None:
    """Proc's one error-translation point: EMFILE is fdscope's own limit, not the target's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        with pytest.raises(OutOfFds, match="RLIMIT_NOFILE of 64"):
            Proc().read_text(os.getpid(), "limits", pid=os.getpid())
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
