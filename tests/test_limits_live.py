"""`fdscope limits` against the live kernel and real child processes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from fdscope.limits import gather_limits
from fdscope.proc import Proc
from tests.limits_support import fd_holder


def sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text()


def codes(doc: dict) -> dict[str, str]:
    return {f["code"]: f["level"] for f in doc["findings"]}


def test_json_equals_proc_sys(invoke) -> None:
    result = invoke("limits", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "fdscope.limits/1"
    assert doc["file_max"] == int(sysctl("fs/file-max"))
    assert doc["nr_open"] == int(sysctl("fs/nr_open"))
    assert doc["epoll_max_user_watches"] == int(sysctl("fs/epoll/max_user_watches"))
    assert doc["somaxconn"] == int(sysctl("net/core/somaxconn"))
    assert doc["inotify_max_user_watches"] == int(sysctl("fs/inotify/max_user_watches"))
    assert doc["inotify_max_user_instances"] == int(sysctl("fs/inotify/max_user_instances"))
    assert doc["kernel"] == sysctl("kernel/osrelease").strip()
    allocated, unused, max_ = (int(x) for x in sysctl("fs/file-nr").split())
    assert doc["file_nr"]["max"] == max_ == doc["file_max"]
    assert doc["file_nr"]["unused"] == unused
    # allocated moves with every open() on the machine; it must be the same order of magnitude.
    assert abs(doc["file_nr"]["allocated"] - allocated) < max(500, allocated // 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert doc["pid"] == os.getpid() and doc["pid_is_self"] is True
    assert doc["rlimit_nofile"] == {"soft": soft, "hard": hard}
    own = [int(n) for n in os.listdir("/proc/self/fd")]
    assert abs(doc["open_fds"] - (len(own) - 1)) <= 2  # listdir's own fd, pytest's churn
    assert doc["headroom"] == soft - doc["open_fds"]


def test_fd_setsize_verified_live() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    nfds = len(os.listdir("/proc/self/fd"))
    rep = gather_limits()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before, "soft limit must be restored"
    assert len(os.listdir("/proc/self/fd")) == nfds, "probe fds must be closed"
    if hard <= 1024:
        assert rep.fd_setsize.verified is False and "hard" in rep.fd_setsize.how
    else:
        assert rep.fd_setsize.verified is True
        assert rep.fd_setsize.value == 1024
        assert "rejected fd 1024" in rep.fd_setsize.how
        assert "filedescriptor out of range in select()" in rep.fd_setsize.how


def test_fd_setsize_unverifiable_when_hard_limit_low() -> None:
    code = (
        "import resource, json; resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1000));"
        "from fdscope.limits import verify_fd_setsize; s = verify_fd_setsize();"
        "print(json.dumps([s.value, s.verified, s.how]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    value, verified, how = json.loads(out.stdout)
    assert (value, verified) == (1024, False)
    assert "1000" in how


def test_child_with_2000_fds_and_soft_4096(invoke) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} < 4096: cannot raise the child's soft limit")
    with fd_holder(4096, 2000) as (pid, fds):
        result = invoke("limits", "--pid", str(pid), "--json")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
    assert doc["pid"] == pid and doc["pid_is_self"] is False
    assert doc["process_name"].startswith("python")
    assert doc["rlimit_nofile"]["soft"] == 4096
    assert doc["open_fds"] == len(fds) >= 2000
    assert doc["highest_fd"] == max(fds) >= 2002
    assert doc["headroom"] == 4096 - len(fds)
    found = codes(doc)
    assert found["select_exposure"] == "warn"
    assert found["select_out_of_range"] == "crit"
    assert "fd_limit_high" not in found and "fd_limit_critical" not in found
    assert doc["verdicts"]["highest_fd"] == "crit"


@pytest.mark.parametrize(
    ("soft", "nfds", "code", "level"),
    [(1000, 830, "fd_limit_high", "warn"), (1000, 960, "fd_limit_critical", "crit")],
)
def test_usage_thresholds(invoke, soft: int, nfds: int, code: str, level: str) -> None:
    with fd_holder(soft, nfds) as (pid, fds):
        doc = json.loads(invoke("limits", "--pid", str(pid), "--json").stdout)
    assert doc["open_fds"] == len(fds)
    found = codes(doc)
    assert found.get(code) == level
    assert "select_exposure" not in found  # soft 1000 <= FD_SETSIZE
    assert "select_out_of_range" not in found  # highest fd < 1024


def test_table_output_lists_every_figure(invoke) -> None:
    result = invoke("limits")
    assert result.exit_code == 0
    for label in ["FD_SETSIZE", "RLIMIT_NOFILE", "fs.file-max", "fs.file-nr", "fs.nr_open",
                  "fs.epoll.max_user_watches", "net.core.somaxconn", "headroom", "findings"]:
        assert label in result.stdout
    assert "\x1b[" not in result.stdout  # not a TTY: no colour


def test_fake_proc_root_with_malformed_limits(tmp_path: Path) -> None:
    pid = 4242
    (tmp_path / str(pid) / "fd").mkdir(parents=True)
    (tmp_path / str(pid) / "limits").write_text("this is not a limits file\n")
    (tmp_path / str(pid) / "comm").write_text("fake\n")
    (tmp_path / str(pid) / "stat").write_text(
        "4242 (fake) S 1 4242 4242 0 -1 4194304 0 0 0 0 1 2 0 0 20 0 1 0 100 0 0 "
        + " ".join(["0"] * 30) + "\n"
    )
    from fdscope.errors import ParseError

    with pytest.raises(ParseError, match="limits"):
        gather_limits(pid, Proc(str(tmp_path)))


def test_zombie_is_stated(invoke) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(200):  # wait until it has exited but is not reaped
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            import time

            time.sleep(0.01)
        result = invoke("limits", "--pid", str(child.pid), "--json")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
    finally:
        child.wait()
    assert doc["process_kind"] == "zombie"
    assert doc["open_fds"] == 0
    assert codes(doc).get("zombie") == "info"
    assert "select_exposure" not in codes(doc)


def test_kernel_thread_is_stated(invoke) -> None:
    result = invoke("limits", "--pid", "2", "--json")
    doc = json.loads(result.stdout)
    if doc["process_kind"] != "kernel_thread":
        pytest.skip("pid 2 is not kthreadd in this pid namespace")
    assert codes(doc)["kernel_thread"] == "info"
    assert doc["open_fds"] == 0


def test_soft_limit_zero_is_critical_not_a_crash(invoke) -> None:
    """prlimit can set a running process's soft RLIMIT_NOFILE to 0 (below its open fds): every
    open() then fails. limits says so (crit), without dividing by zero."""
    import resource

    with fd_holder(1000, 3) as (pid, fds):
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (0, hard))
        result = invoke("limits", "--pid", str(pid), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["rlimit_nofile"]["soft"] == 0 and doc["open_fds"] >= 3
    assert codes(doc).get("fd_limit_critical") == "crit"
    assert "Traceback" not in result.output
