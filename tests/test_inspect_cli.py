"""`fdscope inspect` through the real CLI: output modes, filters, --watch, and every error path
(missing/non-numeric pid, permission denied, zombie, kernel thread, exit mid-scan)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from inspect_support import ZOO, Target, fake_proc, wait_for
from privilege_support import run_as_nobody

import fdscope.inspect.report as inspect_mod
from fdscope.errors import EXIT_ACCESS, EXIT_NO_PROCESS, EXIT_USAGE, AccessDenied
from fdscope.proc import Proc


def free_pid() -> int:
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    with Target(ZOO, str(tmp_path_factory.mktemp("zoo"))) as t:
        t.wait_sleeping()
        yield t


def test_text_output_has_every_section(invoke, zoo) -> None:
    result = invoke("inspect", str(zoo.pid), "--sample", "0")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"pid {zoo.pid} (")
    for title in ("summary", "findings", f"fds ({len(os.listdir(f'/proc/{zoo.pid}/fd'))})",
                  f"epoll fd {zoo.info['ep']} (9 registrations)", "threads (1)", "io model"):
        assert title in out
    assert "reused" in out and "closed" in out and "EPOLL" not in out.split("epoll fd")[0]
    assert "\x1b[" not in out  # no colour when not a terminal


def test_json_output_and_filters(invoke, zoo) -> None:
    result = invoke("inspect", str(zoo.pid), "--json", "--type", "socket,epoll",
                    "--section", "fds", "--section", "epoll", "--sample", "0")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "fdscope.inspect/1" and doc["pid"] == zoo.pid
    assert set(doc) == {"schema", "pid", "name", "cmdline", "state", "uid", "kernel_thread",
                        "partial", "notes", "net_namespace_shared", "listen_drops", "close_recheck", "fds",
                        "epoll"}
    assert doc["net_namespace_shared"] is True
    assert {e["type"] for e in doc["fds"]} == {"socket", "epoll"}
    statuses = sorted(r["status"] for s in doc["epoll"] for r in s["registrations"])
    assert statuses.count("closed") == 1 and statuses.count("reused") == 1


def test_bad_type_and_section_are_usage_errors(invoke, zoo) -> None:
    for args in (["--type", "sockets"], ["--section", "everything"]):
        result = invoke("inspect", str(zoo.pid), *args)
        assert result.exit_code == EXIT_USAGE
        assert result.stderr.startswith("fdscope: unknown ") and result.stderr.count("\n") == 1


def test_missing_and_non_numeric_pid(invoke) -> None:
    pid = free_pid()
    result = invoke("inspect", str(pid))
    assert result.exit_code == EXIT_NO_PROCESS
    assert result.stderr == f"fdscope: no process with pid {pid}\n"
    for bad in ("abc", "-5", "0", "12x"):
        result = invoke("inspect", "--", bad)
        assert result.exit_code == EXIT_USAGE, bad
        assert "PID must be a positive integer" in result.stderr and "Traceback" not in result.stderr
    assert invoke("inspect").exit_code == EXIT_USAGE


def test_permission_denied_as_nobody() -> None:
    """A root-owned target inspected by uid nobody: /proc/PID/fd is refused -> exit 4."""
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code, err = run_as_nobody(["inspect", str(target.pid)])
        assert code == EXIT_ACCESS, err
        assert err.startswith(f"fdscope: permission denied reading /proc/{target.pid}/fd")
        assert "ptrace" in err and err.count("\n") == 1 and "Traceback" not in err
    finally:
        target.kill()
        target.wait()


def test_zombie_is_a_statement(invoke) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        def zombie():
            with open(f"/proc/{child.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"

        assert wait_for(zombie, timeout=10)
        result = invoke("inspect", str(child.pid), "--json")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["state"] == "Z" and doc["fds"] == [] and doc["threads"] == []
        assert doc["summary"]["threads"] == 0
        assert "zombie" in doc["notes"][0] and f"pid {os.getpid()}" in doc["notes"][0]
        assert [f["code"] for f in doc["findings"]] == ["zombie"]
        text = invoke("inspect", str(child.pid)).stdout
        assert "is a zombie" in text
        # --watch has nothing to watch: it says so and ends (exit 3), it does not count 0 fds
        watched = invoke("inspect", str(child.pid), "--watch", "0.1", "--count", "3")
        assert watched.exit_code == 3, watched.output
        assert "zombie" in watched.stderr and watched.stderr.count("\n") == 1
    finally:
        child.wait()


def test_a_thread_id_inspects_its_process(invoke) -> None:
    """/proc/TID exists for every thread (unlisted); a TID given as PID is the process."""
    import threading

    done = threading.Event()
    t = threading.Thread(target=done.wait, daemon=True)
    t.start()
    try:
        tid = t.native_id
        doc = json.loads(invoke("inspect", str(tid), "--json").stdout)
        assert doc["pid"] == os.getpid() and doc["pid"] != tid
        assert any(f"{tid} is a thread id of process {os.getpid()}" in n for n in doc["notes"])
        assert tid in [th["tid"] for th in doc["threads"]]
    finally:
        done.set()
        t.join()


def test_kernel_thread_is_a_statement(invoke) -> None:
    kthreads = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[6]) & 0x00200000:
                kthreads.append(int(name))
    if not kthreads:
        pytest.skip("no kernel thread visible")
    result = invoke("inspect", str(kthreads[0]), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["kernel_thread"] is True and doc["fds"] == []
    assert "kernel thread" in doc["notes"][0]
    # the summary counts the threads the report shows: the kernel thread itself, in no
    # system call (its /proc/PID/syscall shows zeroed registers, not a read())
    assert doc["summary"]["threads"] == len(doc["threads"]) == 1
    assert doc["threads"][0]["syscall"] == "none" and doc["threads"][0]["args"] == {}


class VanishingProc(Proc):
    """Deletes the fake /proc/PID tree right after the fd links were read: the process exits."""

    def __init__(self, root: str, pid: int) -> None:
        super().__init__(root)
        self.pid = pid

    def readlinks(self, *parts, names, pid=None):
        links = super().readlinks(*parts, names=names, pid=pid)
        shutil.rmtree(self.path(self.pid))
        return links


def test_exit_mid_scan_is_exit_3(invoke, tmp_path, monkeypatch) -> None:
    pid = 424242
    fake_proc(tmp_path, pid, fds={0: "pipe:[11]", 3: "anon_inode:[eventpoll]", 4: "socket:[99]"},
              fdinfo={3: "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\n"
                         "tfd:        4 events:       19 data:                4  pos:0 ino:63 sdev:8\n"})
    monkeypatch.setattr(inspect_mod, "Proc", lambda: VanishingProc(str(tmp_path), pid))
    result = invoke("inspect", str(pid))
    assert result.exit_code == EXIT_NO_PROCESS
    assert result.stderr == f"fdscope: process {pid} exited during the scan\n"


class ClosingProc(Proc):
    """Two fds close between listdir and readlink; the process itself lives on."""

    def readlinks(self, *parts, names, pid=None):
        names = list(names)
        for name in ("5", "6"):
            os.unlink(self.path(*parts, name))
        return super().readlinks(*parts, names=names, pid=pid)


def test_fds_vanishing_mid_scan_are_skipped(invoke, tmp_path, monkeypatch) -> None:
    pid = 434343
    fake_proc(tmp_path, pid, fds={0: "pipe:[11]", 1: "pipe:[12]", 5: "pipe:[13]", 6: "pipe:[14]"})
    monkeypatch.setattr(inspect_mod, "Proc", lambda: ClosingProc(str(tmp_path)))
    result = invoke("inspect", str(pid), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [e["fd"] for e in doc["fds"]] == [0, 1]
    assert any("2 fd(s)/thread(s) closed or exited during the scan" in n for n in doc["notes"])


class DeniedProc(Proc):
    def __init__(self, root: str, deny: str) -> None:
        super().__init__(root)
        self.deny = deny

    def listdir(self, *parts, pid=None):
        if parts[-1] == self.deny:
            raise AccessDenied(self.path(*parts), "needs ptrace read access")
        return super().listdir(*parts, pid=pid)

    def read_text(self, *parts, pid=None):
        if parts[-1] == self.deny:
            raise AccessDenied(self.path(*parts), "needs ptrace attach access")
        return super().read_text(*parts, pid=pid)


def test_fd_dir_denied_is_exit_4(invoke, tmp_path, monkeypatch) -> None:
    pid = 454545
    fake_proc(tmp_path, pid, fds={0: "pipe:[11]"})
    monkeypatch.setattr(inspect_mod, "Proc", lambda: DeniedProc(str(tmp_path), "fd"))
    result = invoke("inspect", str(pid))
    assert result.exit_code == EXIT_ACCESS
    assert result.stderr == (f"fdscope: permission denied reading {tmp_path}/{pid}/fd: "
                             "needs ptrace read access\n")


def test_syscall_unreadable_falls_back_to_wchan(invoke, tmp_path, monkeypatch) -> None:
    pid = 464646
    fake_proc(tmp_path, pid, fds={0: "pipe:[11]", 3: "socket:[12]"})
    monkeypatch.setattr(inspect_mod, "Proc", lambda: DeniedProc(str(tmp_path), "syscall"))
    result = invoke("inspect", str(pid), "--json", "--sample", "0")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["partial"] is True
    assert any("syscall of 1 thread(s) unreadable" in n and "ptrace" in n for n in doc["notes"])
    (t,) = doc["threads"]
    assert t["syscall"] is None and t["wchan"] == "do_sys_poll" and t["args"] == {}
    assert doc["io_model"]["kind"] == "poll"
    text = invoke("inspect", str(pid), "--sample", "0").stdout
    assert "partial report:" in text and "syscall of 1 thread(s) unreadable" in text


def test_malformed_fdinfo_and_net_table_are_partial(invoke, tmp_path, monkeypatch) -> None:
    pid = 474747
    fake_proc(
        tmp_path, pid,
        fds={0: "pipe:[11]", 3: "anon_inode:[eventpoll]", 4: "socket:[99]", 5: "pipe:[12]"},
        fdinfo={3: "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\ntfd: zz events: 19 data: 4\n",
                5: "pos:\tminus-one\nflags:\t0?\n"},
        net={"tcp": "  sl  local_address rem_address   st tx_queue rx_queue\n"
                    "   0: garbage\n"})
    monkeypatch.setattr(inspect_mod, "Proc", lambda: Proc(str(tmp_path)))
    result = invoke("inspect", str(pid), "--json", "--sample", "0")
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["partial"] is True
    notes = "\n".join(doc["notes"])
    # one malformed registration line costs that registration, not the set
    assert "epoll fd 3: 1 registration line(s) unreadable, left out: cannot parse fdinfo" in notes
    assert "fd 5: cannot parse fdinfo" in notes
    assert f"/proc/{pid}/net/tcp: cannot parse" in notes
    assert doc["epoll"] == [{"epfd": 3, "registrations": []}]
    assert {e["fd"]: e["type"] for e in doc["fds"]} == {0: "pipe", 3: "epoll", 4: "socket", 5: "pipe"}
    assert next(e for e in doc["fds"] if e["fd"] == 5)["flags"] is None
    assert next(e for e in doc["fds"] if e["fd"] == 4)["socket"]["proto"] == "unknown"


LEAKER = textwrap.dedent(
    """
    import json, os, time
    print(json.dumps({}), flush=True)
    keep = []
    while True:
        keep.append(os.pipe()); time.sleep(0.02)
    """
)


def test_watch_counts_growth(invoke) -> None:
    with Target(LEAKER) as t:
        result = invoke("inspect", str(t.pid), "--watch", "0.2", "--count", "3", "--json")
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == 3
        assert all(x["schema"] == "fdscope.inspect.watch/1" and x["pid"] == t.pid for x in lines)
        assert lines[0]["delta"] == {} and lines[0]["t"] == 0
        assert lines[2]["by_type"]["pipe"] > lines[0]["by_type"]["pipe"]
        assert lines[2]["delta"]["pipe"] > 0 and lines[2]["growth_per_min"] > 0
        assert lines[2]["open_fds"] == sum(lines[2]["by_type"].values())
        text = invoke("inspect", str(t.pid), "--watch", "0.1", "--count", "2")
        assert text.exit_code == 0
        rows = text.stdout.splitlines()
        assert rows[0].startswith(f"watching pid {t.pid}") and len(rows) == 3
        assert "growth" in rows[2] and "pipe +" in rows[2]


def test_entry_point_subprocess(zoo) -> None:
    exe = os.path.join(os.path.dirname(sys.executable), "fdscope")
    t0 = time.monotonic()
    out = subprocess.run([exe, "inspect", str(zoo.pid), "--json"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pid"] == zoo.pid
    assert time.monotonic() - t0 < 10


def test_help_has_examples_and_exit_codes(invoke) -> None:
    result = invoke("inspect", "--help")
    assert result.exit_code == 0
    out = result.stdout
    assert "Examples:" in out and "Exit codes" in out
    for option in ("--json", "--type", "--section", "--sample", "--flags", "--watch"):
        assert option in out
    assert "--count" not in out  # hidden: for tests and scripts
