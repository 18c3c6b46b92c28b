"""`fdscope top` and the host scan on a small busy host with known truth (tests/top_support.py):
each flag for exactly the right pid, counts as /proc has them, denied processes for a non-root
run, the live screen in a pseudo-terminal, JSON, pipes and bad options."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import resource
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

from fdscope.host import flags as host_flags
from fdscope.host.model import ProcessRow, sort_rows
from fdscope.host.scan import ProcessFilter, Scanner
from tests.inspect_support import Target
from tests.top_support import ROLES, SCRIPT

FDSCOPE = [sys.executable, "-m", "fdscope"]
EXPECTED = {  # role -> the one flag it must carry
    "near_limit": "near_limit", "leaker": "growing", "select": "select_risk",
    "stale_epoll": "stale_epoll", "close_wait": "close_wait", "backlog_full": "backlog_full",
    "idle": None,
}


@pytest.fixture(scope="module")
def host():
    targets = {}
    try:
        for role in ROLES:
            targets[role] = Target(SCRIPT, role)
        for role in ("select", "idle", "stale_epoll"):
            targets[role].wait_sleeping(timeout=20)
        yield targets
    finally:
        for t in targets.values():
            t.close()


def _pids(host) -> dict[int, str]:
    return {t.pid: role for role, t in host.items()}


def _scan_until_growing(host, scans: int = 6, pause: float = 0.3):
    scanner = Scanner(select=ProcessFilter(pids=frozenset(_pids(host))))
    snap = None
    for i in range(scans):
        if i:
            time.sleep(pause)
        snap = scanner.scan()
    return snap


@pytest.mark.timeout(120)
def test_each_flag_for_exactly_the_right_pid(host):
    snap = _scan_until_growing(host)
    roles = _pids(host)
    assert {r.pid for r in snap.processes} == set(roles)
    for row in snap.processes:
        role = roles[row.pid]
        codes = {f.code for f in row.flags}
        want = EXPECTED[role]
        assert codes == ({want} if want else set()), (role, [f.message for f in row.flags])
    near = snap.row(host["near_limit"].pid).flag("near_limit")
    assert near.level == "crit"  # 96 of 100
    sel = snap.row(host["select"].pid).flag("select_risk")
    assert "1500" in sel.message and sel.level == "crit"
    stale = snap.row(host["stale_epoll"].pid).flag("stale_epoll")
    assert host["stale_epoll"].info["closed"] in stale.fds
    cw = snap.row(host["close_wait"].pid).flag("close_wait")
    assert set(host["close_wait"].info["fds"]) <= set(cw.fds)
    full = snap.row(host["backlog_full"].pid).flag("backlog_full")
    assert host["backlog_full"].info["fd"] in full.fds


def _links(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass
    return out


@pytest.mark.timeout(120)
def test_counts_match_proc(host):
    stable = {role: t for role, t in host.items() if role != "leaker"}
    snap = Scanner(select=ProcessFilter(pids=frozenset(t.pid for t in stable.values()))).scan()
    for role, t in stable.items():
        row = snap.row(t.pid)
        links = _links(t.pid)
        assert row.fds == len(links), role
        assert row.highest_fd == max(links), role
        soft, hard = resource.prlimit(t.pid, resource.RLIMIT_NOFILE)
        assert (row.soft, row.hard) == (soft, hard), role
        sockets = sum(1 for v in links.values() if v.startswith("socket:["))
        assert row.types.get("socket", 0) == sockets, role
        assert sum(row.types.values()) == row.fds
        assert row.headroom == soft - row.fds
    with open("/proc/sys/fs/nr_open") as f:
        assert snap.host.nr_open == int(f.read())
    with open("/proc/sys/fs/file-max") as f:
        assert snap.host.file_nr.max == int(f.read())
    # The host totals count every process, not only the selected ones.
    assert snap.host.processes >= len(stable) and snap.host.fds_total >= sum(
        r.fds for r in snap.processes)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FDSCOPE, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(120)
def test_json_ndjson_growth_and_flags(host):
    pids = ",".join(str(t.pid) for t in host.values())
    res = _cli("top", "--json", "--count", "5", "--interval", "0.3", "--pid", pids,
               "--sort", "fds")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 5
    docs = [json.loads(line) for line in lines]
    for i, doc in enumerate(docs):
        assert doc["schema"] == "fdscope.top/1"
        assert set(doc["host"]) >= {"file_nr", "nr_open", "processes", "fds_total", "denied"}
        assert set(doc["host"]["file_nr"]) == {"allocated", "unused", "max"}
        assert isinstance(doc["elapsed_ms"], float)
        fds = [p["fds"] for p in doc["processes"]]
        assert fds == sorted(fds, reverse=True)
        for p in doc["processes"]:
            assert set(p) >= {"pid", "name", "user", "fds", "soft", "hard", "headroom", "used",
                              "highest_fd", "growth_per_min", "types", "flags"}
            assert (p["growth_per_min"] is None) == (i == 0)
    last = {p["pid"]: p for p in docs[-1]["processes"]}
    assert last[host["idle"].pid]["growth_per_min"] == 0
    assert last[host["leaker"].pid]["growth_per_min"] > 0
    codes = {pid: {f["code"] for f in p["flags"]} for pid, p in last.items()}
    assert codes[host["leaker"].pid] == {"growing"}
    assert codes[host["near_limit"].pid] == {"near_limit"}
    assert all({"code", "level", "message"} <= set(f) for p in last.values() for f in p["flags"])


@pytest.mark.timeout(120)
def test_once_table_and_filters(host):
    t = host["near_limit"]
    res = _cli("top", "--once", "--pid", str(t.pid))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0].startswith("host: file-nr ")
    assert out[2].split()[:4] == ["PID", "USER", "NAME", "FDS"]
    row = out[3].split()
    assert row[0] == str(t.pid) and row[3] == "96" and row[4] == "100"
    assert "near_limit!" in out[3]
    assert any("near_limit: 96 fds open of a soft limit of 100" in line for line in out)
    # --name and --user narrow the rows; --limit cuts them.
    uid = os.geteuid()
    pids = ",".join(str(x.pid) for x in host.values())
    res = _cli("top", "--json", "--name", "^python", "--user", f"{uid},{uid}", "--limit", "2",
               "--sort", "used", "--pid", pids)
    doc = json.loads(res.stdout)
    assert len(doc["processes"]) == 2
    assert all(p["name"].startswith("python") and p["uid"] == uid for p in doc["processes"])
    assert doc["processes"][0]["pid"] == t.pid  # the highest fraction used first
    res = _cli("top", "--json", "--name", "^nomatch$", "--pid", pids)
    assert json.loads(res.stdout)["processes"] == []


@pytest.mark.timeout(60)
def test_non_root_reports_denied_processes(host):
    if os.geteuid() != 0:
        # already not root: pid 1 (root's) is denied unless hidepid hides it
        doc = json.loads(_cli("top", "--json", "--pid", "1").stdout or "null")
        if doc is None:
            pytest.skip("pid 1 is not visible (hidepid)")
        assert doc["host"]["denied"] >= 1 and doc["processes"][0]["denied"] is True
        return
    from tests.privilege_support import run_as_nobody

    argv = ["top", "--json", "--pid", ",".join(str(t.pid) for t in host.values())]
    code, text = run_as_nobody(argv, capture=1)
    assert code == 0
    doc = json.loads(text)
    assert doc["host"]["denied"] == len(host)
    for p in doc["processes"]:
        assert p["denied"] is True and p["types"] is None and p["highest_fd"] is None
        # counts and limits are readable without ptrace access: near_limit still holds
        near = p["pid"] == host["near_limit"].pid and p["fds"] is not None
        assert [f["code"] for f in p["flags"]] == (["near_limit"] if near else [])
        # never shown as zero: the count from stat(/proc/PID/fd) where the kernel gives it
        assert p["fds"] is None or p["fds"] == len(_links(p["pid"])) or p["pid"] == \
            host["leaker"].pid
    assert any("denied" in n for n in doc["notes"])


def _read_for(fd: int, seconds: float) -> bytes:
    out = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _wait_exit(pid: int, timeout: float) -> int | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.timeout(90)
@pytest.mark.parametrize("quit_key", [b"q", b"\x03"])
def test_live_mode_in_a_pty(host, quit_key):
    pid, master = pty.fork()
    if pid == 0:
        os.environ["NO_COLOR"] = "1"
        os.execv(sys.executable, [*FDSCOPE, "top", "--interval", "0.3", "--pid",
                                  ",".join(str(t.pid) for t in host.values())])
    try:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        out = b""
        deadline = time.monotonic() + 30
        while out.count(b"\x1b[H") < 3 and time.monotonic() < deadline:
            out += _read_for(master, 0.3)
        assert out.count(b"\x1b[H") >= 3, out[-500:]  # redrawn in place, every interval
        assert b"\x1b[?1049h" in out  # the alternate screen
        frame = out.rsplit(b"\x1b[H", 1)[1]
        assert b"near_limit" in frame and b"PID" in frame
        # A resize redraws at once, cut to the new width.
        before = out.count(b"\x1b[H")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 12, 40, 0, 0))
        more = _read_for(master, 0.25)
        assert more.count(b"\x1b[H") >= 1, (before, more)
        frame = more.rsplit(b"\x1b[H", 1)[1].split(b"\x1b[J")[0]
        lines = [x.replace(b"\x1b[K", b"") for x in frame.split(b"\r\n")]
        assert max(len(x) for x in lines) <= 40
        assert len(lines) <= 12
        # A sort key redraws with the new order's name.
        os.write(master, b"f")
        assert b"sort fds" in _read_for(master, 0.5)
        os.write(master, quit_key)
        tail = _read_for(master, 2)
        code = _wait_exit(pid, 20)
        assert code == 0
        assert b"\x1b[?1049l" in tail  # the screen is restored
        assert b"Traceback" not in out + more + tail
    finally:
        os.close(master)


@pytest.mark.timeout(60)
def test_piped_to_head_exits_quietly():
    res = subprocess.run(
        f"{sys.executable} -m fdscope top --json --count 200 --interval 0.1 | head -c 100",
        shell=True, capture_output=True, text=True, timeout=50)
    assert len(res.stdout) == 100
    assert res.stderr == ""


@pytest.mark.parametrize("args, code, text", [
    (["--sort", "bogus"], 2, "--sort"),
    (["--interval", "nan"], 2, "not a finite number"),
    (["--interval", "0"], 2, "out of range"),
    (["--interval", "٣"], 2, "--interval"),
    (["--limit", "0"], 2, "out of range"),
    (["--count", "-1"], 2, "out of range"),
    (["--pid", "abc"], 2, "PID must be a positive integer"),
    (["--pid", "99999999999"], 2, "PID must be a positive integer"),
    (["--name", "("], 2, "bad regular expression"),
    (["--user", "no_such_user_fdscope"], 2, "no such user"),
    (["--once", "--count", "3"], 2, "--once"),
    (["--once", "--pid", "4194304"], 3, "no process with pid 4194304"),
])
def test_bad_options_one_line_error(args, code, text):
    res = _cli("top", *args)
    assert res.returncode == code, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdscope: ") and text in lines[0], lines


@pytest.mark.timeout(60)
def test_control_characters_in_names_are_escaped():
    script = ("import sys, time\nopen('/proc/self/comm', 'w').write('ev\\x1b[2Jil\\n')\n"
              "print('{}', flush=True)\ntime.sleep(3600)\n")
    with Target(script) as t:
        res = _cli("top", "--once", "--pid", str(t.pid))
        assert res.returncode == 0, res.stderr
        assert "\x1b" not in res.stdout and "ev\\x1b[2Jil\\n" in res.stdout
        doc = json.loads(_cli("top", "--json", "--pid", str(t.pid)).stdout)
        assert doc["processes"][0]["name"] == "ev\x1b[2Jil\n"


def _row(pid: int, fds: int | None, soft: int | None, growth: float | None = None) -> ProcessRow:
    return ProcessRow(pid, "p", "u", 0, "S", 1, fds, soft, soft, growth_per_min=growth)


def test_sort_keys():
    rows = [_row(1, 10, 100), _row(2, 90, 1000), _row(3, 50, 60, 5.0), _row(4, None, None)]
    assert [r.pid for r in sort_rows(rows, "used")] == [3, 1, 2, 4]
    assert [r.pid for r in sort_rows(rows, "fds")] == [2, 3, 1, 4]
    assert [r.pid for r in sort_rows(rows, "growth")] == [3, 2, 1, 4]
    assert [r.pid for r in sort_rows(rows, "headroom")] == [3, 1, 2, 4]
    with pytest.raises(ValueError):
        sort_rows(rows, "name")


def test_growing_needs_steady_growth():
    assert host_flags.growing([(0, 10), (1, 11), (2, 12)], 100) is None  # too few refreshes
    assert host_flags.growing([(0, 10), (1, 11), (2, 11), (3, 12)], 100) is None  # a pause
    f = host_flags.growing([(0, 10), (60, 20), (120, 30), (180, 40)], 100)
    assert f is not None and f.level == "warn" and "+10.0/min" in f.message
    assert "6 min" in f.message  # 60 fds left at 10/min
    assert host_flags.near_limit(79, 100) is None
    assert host_flags.near_limit(80, 100).level == "warn"
    assert host_flags.near_limit(95, 100).level == "crit"
    assert host_flags.near_limit(5, None) is None


@pytest.mark.timeout(60)
def test_refresh_rereads_only_what_changed(host):
    from fdscope.proc import Proc

    class Counting(Proc):
        read: list[int] = []

        def readlink_list(self, *parts, names, pid=None):  # readlinks() calls it too
            self.read.append(parts[0])
            return super().readlink_list(*parts, names=names, pid=pid)

    proc = Counting()
    pids = {t.pid for t in host.values()}
    scanner = Scanner(proc, select=ProcessFilter(pids=frozenset(pids)))
    first = scanner.scan()
    assert set(proc.read) == pids
    proc.read.clear()
    time.sleep(0.3)
    second = scanner.scan()
    # only the leaker's count changed: only its table is read again
    assert set(proc.read) == {host["leaker"].pid}
    for role, t in host.items():
        if role != "leaker":
            assert second.row(t.pid).types == first.row(t.pid).types
            assert second.row(t.pid).flags == first.row(t.pid).flags


def test_a_copied_proc_tree(tmp_path):
    """A canned tree (FDSCOPE_PROC_ROOT): counts from the listing (no st_size count there),
    types by inspect's classifier, a hostile name kept exact in JSON, the sysctls read."""
    from fdscope.proc import Proc
    from tests.inspect_support import fake_proc

    fake_proc(tmp_path, 4242, comm="a\x1bb", fds={
        0: "/dev/null", 1: "pipe:[100]", 2: "socket:[200]", 7: "anon_inode:[eventfd]",
        9: "anon_inode:[eventpoll]"})
    fake_proc(tmp_path, 4243, fds={0: "socket:[201]"})
    (tmp_path / "4243" / "fd").chmod(0)  # an unreadable fd table, as for another user
    sys_fs = tmp_path / "sys" / "fs"
    sys_fs.mkdir(parents=True)
    (sys_fs / "file-nr").write_text("1000\t0\t50000\n")
    (sys_fs / "nr_open").write_text("1048576\n")
    snap = Scanner(Proc(str(tmp_path))).scan()
    row = snap.row(4242)
    assert (row.fds, row.highest_fd, row.soft, row.hard) == (5, 9, 1024, 4096)
    assert row.types == {"chr": 1, "epoll": 1, "eventfd": 1, "pipe": 1, "socket": 1}  # /dev/null
    assert row.to_json()["name"] == "a\x1bb"
    assert snap.host.file_nr.max == 50000 and snap.host.nr_open == 1048576
    if os.geteuid() != 0:  # root reads a mode-0 directory anyway
        other = snap.row(4243)
        assert other.denied and other.fds is None and snap.host.denied == 1


def test_readahead_only_for_top_without_a_process_filter():
    from fdscope.host.readahead import wanted

    assert wanted(["top"]) and wanted(["top", "--once", "--json"])
    assert wanted(["top", "--sort", "fds", "--limit", "5"])
    for argv in (["top", "--pid", "1"], ["top", "--pid=1"], ["top", "--user", "root"],
                 ["top", "--name=nginx"], ["top", "--help"], ["inspect", "1"], [],
                 ["limits"]):
        assert not wanted(argv), argv


@pytest.mark.timeout(60)
def test_the_first_scan_takes_the_readahead_tables(host, monkeypatch):
    """start() reads every table while click would load; the first scan uses each read whose
    fd count still holds and reads only the others (here: the leaker, which grows)."""
    import fdscope.host.scan as scan_mod
    from fdscope import speedups
    from fdscope.host import readahead
    from fdscope.proc import Proc

    if speedups.backend.name != "c":
        pytest.skip("the read-ahead runs with the C accelerator only")
    assert readahead.start(["top", "--once"])
    own: list[int] = []
    read = scan_mod.read_table
    monkeypatch.setattr(scan_mod, "read_table", lambda proc, pid: own.append(pid) or
                        read(proc, pid))
    proc = Proc()
    pids = frozenset(t.pid for t in host.values())
    time.sleep(0.3)  # the leaker opens more fds meanwhile
    snap = Scanner(proc, select=ProcessFilter(pids=pids), ahead=readahead.take(proc)).scan()
    assert readahead.take(proc) is None  # once
    assert set(own) == {host["leaker"].pid}
    plain = Scanner(select=ProcessFilter(pids=pids)).scan()
    for role, t in host.items():
        if role != "leaker":
            assert snap.row(t.pid).types == plain.row(t.pid).types, role
            assert snap.row(t.pid).fds == plain.row(t.pid).fds, role


def test_a_readahead_table_of_another_count_is_read_again():
    from concurrent.futures import Future

    from fdscope.host.scan import _Readers
    from fdscope.host.tables import RawTable

    early = Future()
    early.set_result(RawTable([0, 1, 2], ["pipe:[1]"] * 3, b"ppp", [1, 1, 1], {}, {}))
    fresh = RawTable([0, 1, 2, 3], ["pipe:[1]"] * 4, b"pppp", [1, 1, 1, 1], {}, {})
    again: list[int] = []
    readers = _Readers(lambda pid: again.append(pid) or fresh, {7: early, 8: early})
    readers.add(7, 4)  # the count moved on since the read-ahead
    readers.add(8, 3)  # still the count read
    readers.add(9, 4)  # no read-ahead
    assert list(readers.results()) == [fresh, early.result(), fresh]
    assert again == [7, 9]
    readers.close()


def test_the_limit_read_by_prlimit_is_the_limit_in_proc(host):
    """RLIMIT_NOFILE from prlimit(2) (live /proc) equals /proc/PID/limits, which a copied tree
    and a refused prlimit fall back to."""
    from fdscope.host.scan import _nofile
    from fdscope.parse.limits import parse_limits
    from fdscope.proc import Proc

    for t in host.values():
        with open(f"/proc/{t.pid}/limits") as f:
            want = parse_limits(f.read()).nofile
        assert _nofile(Proc(), t.pid) == (want.soft, want.hard)
    assert _nofile(Proc(), host["near_limit"].pid)[0] == 100
    assert _nofile(Proc(), 2**22 + 12345) == (None, None)  # no such process


def test_readahead_readers_import_nothing():
    """The read-ahead threads run while the main thread imports click: their error paths
    (an exited process, a denied one) must not import a module (one that did made `top` fail now and then
    inside importlib). A fresh interpreter, as the entry point has it before click."""
    code = textwrap.dedent("""
        import os, sys, threading
        from fdscope.host import readahead
        from fdscope.inspect import gather, readahead as inspect_readahead
        from fdscope.host.tables import read_table
        from fdscope.proc import Proc
        seen = []
        class Spy:
            def find_spec(self, name, path=None, target=None):
                seen.append(name)
        def run():
            sys.meta_path.insert(0, Spy())
            gone = 2**22 + 4321  # above pid_max's default: no such process
            assert not isinstance(read_table(Proc(), gone), tuple)
            try:
                gather.process(Proc(), gone)
            except Exception as err:
                assert type(err).__name__ == "NoSuchProcess", err
            live = os.getppid()  # the test's process: sockets, pipes, files
            assert isinstance(read_table(Proc(), live), tuple)
            gather.process(Proc(), live)
            if os.geteuid() == 0:  # as nobody, root's pid 1: the AccessDenied path
                os.setgid(65534)
                os.setuid(65534)
                assert type(read_table(Proc(), 1)).__name__ == "AccessDenied"
                try:
                    gather.process(Proc(), 1)
                except Exception as err:
                    assert type(err).__name__ == "AccessDenied", err
            sys.meta_path.pop(0)
        t = threading.Thread(target=run)
        t.start()
        t.join()
        print(seen)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
