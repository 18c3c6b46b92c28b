"""`fdscope inspect` against live processes: the fd zoo (every field asserted) and real servers
classified by io_model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from inspect_support import (
    ASYNCIO_SERVER,
    BUSY_SERVER,
    SELECT_SERVER,
    THREAD_SERVER,
    ZOO,
    Target,
    connect,
    wait_for,
)

from fdscope.inspect import inspect_process
from fdscope.parse.events import (
    EPOLLERR,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLHUP,
    EPOLLIN,
    EPOLLONESHOT,
    EPOLLRDHUP,
)
from fdscope.render.inspect import render_json, render_report_json, render_text


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    target = Target(ZOO, str(tmp_path_factory.mktemp("zoo")))
    try:
        target.wait_sleeping()
        report = inspect_process(target.pid, sample=0)
        yield target.info, report, report.to_json(), target.pid
    finally:
        target.close()


def _fd(doc, fd):
    return next(e for e in doc["fds"] if e["fd"] == fd)


def _reg(doc, epfd, tfd):
    s = next(s for s in doc["epoll"] if s["epfd"] == epfd)
    return next(r for r in s["registrations"] if r["tfd"] == tfd)


def test_zoo_header_and_summary(zoo):
    info, _rep, doc, pid = zoo
    assert doc["schema"] == "fdscope.inspect/1"
    assert doc["pid"] == pid and doc["name"] == os.path.basename(sys.executable)[:15]
    assert doc["state"] == "S"
    assert doc["cmdline"][1] == "-c" and doc["partial"] is False
    assert doc["net_namespace_shared"] is True
    s = doc["summary"]
    open_now = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    assert s["open_fds"] == len(open_now) and s["highest_fd"] == open_now[-1]
    with open(f"/proc/{pid}/limits") as f:
        soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
    assert s["soft_limit"] == soft and s["headroom"] == soft - s["open_fds"]
    # 3 tcp fds + udp + 2 unix + 5 CLOSE_WAIT + full listener + 3 pending + 4 unix (reused/closed)
    assert s["by_type"]["socket"] == 19
    assert s["by_type"]["epoll"] == 2 and s["by_type"]["eventfd"] == 1 and s["by_type"]["file"] == 1
    assert s["socket_states"]["CLOSE_WAIT"] == 5 and s["socket_states"]["LISTEN"] == 2
    assert s["epoll_registrations"] == 10 and s["threads"] == 1
    assert info["closed"] not in open_now


def test_zoo_fds(zoo):
    info, _rep, doc, _pid = zoo
    lst = _fd(doc, info["lst"])
    assert lst["type"] == "socket" and lst["target"] == f"socket:[{lst['inode']}]"
    assert lst["socket"] == {"proto": "tcp", "state": "LISTEN", "local": f"127.0.0.1:{info['lst_addr'][1]}",
                             "remote": None, "recv_q": 0, "send_q": 16}
    cli, srv = _fd(doc, info["cli"]), _fd(doc, info["srv"])
    assert cli["socket"]["state"] == srv["socket"]["state"] == "ESTABLISHED"
    assert cli["socket"]["remote"] == lst["socket"]["local"] == srv["socket"]["local"]
    assert srv["socket"]["remote"] == cli["socket"]["local"]
    assert "O_NONBLOCK" in srv["flags"] and "O_NONBLOCK" not in cli["flags"]
    assert cli["flags"][0] == "O_RDWR" and "O_CLOEXEC" in cli["flags"]
    udp = _fd(doc, info["udp"])
    assert udp["socket"]["proto"] == "udp" and udp["socket"]["state"] == "UNCONN"
    assert udp["socket"]["local"] == f"127.0.0.1:{info['udp_addr'][1]}"
    assert udp["socket"]["remote"] is None
    ua, ub = _fd(doc, info["ua"]), _fd(doc, info["ub"])
    assert ua["socket"]["proto"] == ub["socket"]["proto"] == "unix"
    assert ua["socket"]["state"] == "CONNECTED"
    pr, pw = _fd(doc, info["pr"]), _fd(doc, info["pw"])
    assert pr["type"] == pw["type"] == "pipe" and pr["inode"] == pw["inode"]
    assert pr["flags"][0] == "O_RDONLY" and pw["flags"][0] == "O_WRONLY"
    efd = _fd(doc, info["efd"])
    assert efd["type"] == "eventfd" and efd["target"] == "anon_inode:[eventfd]"
    assert efd["inode"] is None and efd["socket"] is None
    f = _fd(doc, info["file"])
    assert f["type"] == "file" and f["target"] == info["path"] and f["pos"] == 6
    assert f["flags"][0] == "O_WRONLY" and "O_APPEND" in f["flags"]
    assert f["inode"] == os.stat(info["path"]).st_ino
    full = _fd(doc, info["full"])["socket"]
    assert full["state"] == "LISTEN" and full["send_q"] == 1 and full["recv_q"] == 2
    for fd in info["cw"]:
        assert _fd(doc, fd)["socket"]["state"] == "CLOSE_WAIT"
    assert _fd(doc, info["ep"])["type"] == "epoll"


def test_zoo_epoll(zoo):
    info, _rep, doc, _pid = zoo
    ep, ep2 = info["ep"], info["ep2"]
    assert [s["epfd"] for s in doc["epoll"]] == [ep, ep2]
    level = _reg(doc, ep, info["lst"])
    assert level["mask"] == EPOLLIN | EPOLLERR | EPOLLHUP
    assert level["events"] == ["EPOLLIN", "EPOLLERR", "EPOLLHUP"]
    assert level["status"] == "ok" and level["open_as"] == [info["lst"]] and level["verified"]
    assert level["inode"] == _fd(doc, info["lst"])["inode"]
    assert level["sdev"] == os.stat(f"/proc/{doc['pid']}/fd/{info['lst']}").st_dev
    assert _reg(doc, ep, info["srv"])["mask"] & EPOLLET
    assert "EPOLLET" in _reg(doc, ep, info["srv"])["events"]
    oneshot = _reg(doc, ep, info["udp"])
    assert info["fired"] == [info["udp"]]
    assert oneshot["mask"] == EPOLLONESHOT and oneshot["events"] == ["EPOLLONESHOT"]
    assert _reg(doc, ep, info["ua"])["mask"] & EPOLLEXCLUSIVE
    assert "EPOLLEXCLUSIVE" in _reg(doc, ep, info["ua"])["events"]
    assert "EPOLLRDHUP" in _reg(doc, ep, info["cli"])["events"]
    assert _reg(doc, ep, info["cli"])["mask"] & EPOLLRDHUP
    # kcmp(2) tells files apart where inodes cannot: an eventfd (all anon-inode files share
    # one inode), and a pipe's ends (one inode, two open files): open_as is the same end only.
    anon = _reg(doc, ep, info["efd"])
    assert anon["status"] == "ok" and anon["verified"] is True and anon["open_as"] == [info["efd"]]
    pipe = _reg(doc, ep, info["pr"])
    assert pipe["status"] == "ok" and pipe["open_as"] == [info["pr"]] and pipe["verified"]
    assert all(r["verified"] for s in doc["epoll"] for r in s["registrations"])
    assert not any("not verified" in n for n in doc["notes"])
    closed = _reg(doc, ep, info["closed"])
    assert closed["status"] == "closed" and closed["open_as"] == [info["closed_dup"]]
    assert closed["inode"] == _fd(doc, info["closed_dup"])["inode"]
    reused = _reg(doc, ep, info["reused"])
    assert reused["status"] == "reused" and reused["open_as"] == [info["reused_keep"]]
    assert _fd(doc, info["reused"])["type"] == "pipe"
    assert [r["tfd"] for r in doc["epoll"][1]["registrations"]] == [info["lst"]]
    for s in doc["epoll"]:
        for r in s["registrations"]:
            assert r["data"] & 0xFFFFFFFF == r["tfd"]  # Python's select.epoll stores the fd


def test_zoo_findings(zoo):
    info, _rep, doc, _pid = zoo
    by_code = {}
    for f in doc["findings"]:
        by_code.setdefault(f["code"], []).append(f)
    assert set(by_code) == {
        "epoll_reused_registration", "listen_backlog_full", "epoll_closed_registration",
        "epoll_et_blocking", "epoll_multi_set", "close_wait_pile", "epoll_oneshot_disarmed"}
    assert by_code["epoll_reused_registration"][0]["level"] == "crit"
    assert f"fd {info['reused']}" in by_code["epoll_reused_registration"][0]["message"]
    # full, with drops counted in the namespace (the zoo's own third connect at least): crit
    full = by_code["listen_backlog_full"][0]
    assert full["level"] == "crit" and full["fds"] == [info["full"]]
    assert doc["listen_drops"]["overflows"] > 0
    assert f"fd {info['full']}" in full["message"] and "ListenOverflows" in full["message"]
    closed = by_code["epoll_closed_registration"][0]
    assert closed["level"] == "warn" and f"fd {info['closed_dup']}" in closed["message"]
    et = by_code["epoll_et_blocking"][0]["message"]
    assert f"fd {info['pr']} " in et and f"fd {info['srv']} " not in et
    assert f"fd {info['lst']} in epoll fds {info['ep']}, {info['ep2']}" in \
        by_code["epoll_multi_set"][0]["message"]
    assert "5 in CLOSE_WAIT" in by_code["close_wait_pile"][0]["message"]
    assert by_code["close_wait_pile"][0]["fds"] == sorted(info["cw"])
    # re-read a moment later (the zoo sleeps: all still open)
    assert doc["close_recheck"] == {"delay_s": 0.3, "still_open": sorted(info["cw"]), "closed": 0}
    assert "still open 0.3 s later" in by_code["close_wait_pile"][0]["message"]
    assert by_code["epoll_reused_registration"][0]["fds"] == [
        info["ep"], info["reused"], info["reused_keep"]]
    assert by_code["epoll_oneshot_disarmed"][0]["level"] == "info"
    assert [f["level"] for f in doc["findings"]] == sorted(
        (f["level"] for f in doc["findings"]), key=["crit", "warn", "info"].index)


def test_zoo_threads_and_io_model(zoo):
    _info, _rep, doc, pid = zoo
    (t,) = doc["threads"]
    assert t["tid"] == pid and t["state"] == "S"
    assert t["syscall"] in ("clock_nanosleep", "nanosleep", "select", "pselect6")
    assert t["wchan"]
    assert doc["io_model"]["kind"] == "idle"
    assert doc["cpu"]["source"] == "lifetime"


def test_zoo_renderers_agree(zoo):
    _info, rep, doc, _pid = zoo
    fast = json.loads(render_report_json(rep))
    assert fast == json.loads(render_json(doc)) == json.loads(json.dumps(doc))
    text = render_text(doc)
    for title in ("summary", "findings", "fds (", "epoll fd", "threads (", "io model"):
        assert title in text
    only = render_text(doc, ["epoll"])
    assert "epoll fd" in only and "threads (" not in only and "summary" not in only


def test_zoo_type_and_section_filters(zoo):
    info, _rep, _doc, pid = zoo
    rep = inspect_process(pid, sample=0, types=["socket", "epoll"], sections=["fds", "epoll"])
    doc = rep.to_json()
    assert {e["type"] for e in doc["fds"]} == {"socket", "epoll"}
    assert "threads" not in doc and "summary" not in doc and "epoll" in doc
    assert len(rep.fds) > len(doc["fds"])  # the summary still counts every fd


def _model(pid, sample=0.0, timeout=5.0):
    def probe():
        rep = inspect_process(pid, sample=sample)
        return rep if rep.io_model.kind not in ("unknown", "idle") else None

    rep = wait_for(probe, timeout=timeout)
    return rep or inspect_process(pid, sample=sample)


def test_asyncio_server_is_epoll():
    with Target(ASYNCIO_SERVER) as t:
        socks = connect(t.info["port"], 2)
        try:
            rep = _model(t.pid)
            assert rep.io_model.kind == "epoll", rep.io_model
            (ep,) = rep.epoll
            assert f"on fd {ep.epfd}" in rep.io_model.summary
            # the listener plus the two connections (and asyncio's self-pipe socket)
            assert len(ep.registrations) >= 3
            assert f"({len(ep.registrations)} targets" in rep.io_model.summary
            assert all(r.status == "ok" for r in ep.registrations)
        finally:
            for s in socks:
                s.close()


def test_select_server_is_select():
    with Target(SELECT_SERVER) as t:
        socks = connect(t.info["port"], 3)
        try:
            rep = _model(t.pid)
            assert rep.io_model.kind == "select", rep.io_model
            highest = max(e.fd for e in rep.fds if e.type == "socket")
            assert f"nfds={highest + 1}" in rep.io_model.summary
            assert not [f for f in rep.findings if f.code == "select_fd_setsize"]
        finally:
            for s in socks:
                s.close()


def test_thread_per_connection_server():
    with Target(THREAD_SERVER) as t:
        socks = connect(t.info["port"], 3)
        try:
            # A worker just started may not be in recvfrom yet: wait until all three are.
            rep = wait_for(lambda: (r := inspect_process(t.pid, sample=0)).io_model.kind ==
                           "threads" and len(r.threads) == 4 and "3 threads blocked in "
                           "recvfrom" in r.io_model.summary and r, timeout=5)
            assert rep, inspect_process(t.pid, sample=0).io_model
            assert "3 threads blocked in recvfrom" in rep.io_model.summary
            assert "1 in accept" in rep.io_model.summary
            blocked = [th for th in rep.threads if th.syscall == "recvfrom"]
            sock_fds = {e.fd for e in rep.fds if e.socket and e.socket.state == "ESTABLISHED"}
            assert {th.args["fd"] for th in blocked} == sock_fds
        finally:
            for s in socks:
                s.close()


@pytest.mark.timing
@pytest.mark.slow
def test_busy_polling_is_measured():
    with Target(BUSY_SERVER) as t:
        time.sleep(0.2)
        rep = inspect_process(t.pid, sample=0.5)
        assert rep.cpu is not None and rep.cpu.source == "sample" and rep.cpu.window >= 0.5
        # On a loaded machine the spinner gets a share of a core, but never sleeps.
        assert rep.cpu.percent > 10, rep.cpu
        assert rep.io_model.kind == "busy_polling", rep.io_model
        assert rep.threads[0].cpu_percent is not None and rep.threads[0].cpu_percent > 10
        assert rep.threads[0].blocked == 0
        assert any(f.code == "busy_polling" for f in rep.findings)
        # Without --sample, a spinning thread triggers the short automatic sample.
        auto = inspect_process(t.pid)
        assert auto.cpu is not None and auto.cpu.source == "sample"
        assert any("CPU sampled" in n for n in auto.notes)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) for a private network namespace")
def test_socket_in_another_network_namespace():
    script = ("import json, socket, time\n"
              "lst = socket.socket(); lst.bind(('127.0.0.1', 0)); lst.listen(3)\n"
              "print(json.dumps({'port': lst.getsockname()[1]}), flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen(["unshare", "--net", sys.executable, "-c", script],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(proc.stdout.readline())["port"]  # type: ignore[union-attr]
        # unshare(1) execs the program: the pid is the python process in the new namespace
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        rep = inspect_process(proc.pid, sample=0)
        (sock,) = [e.socket for e in rep.fds if e.type == "socket"]
        # only the target's own /proc/PID/net/tcp knows this socket
        assert sock.proto == "tcp" and sock.state == "LISTEN" and sock.local == f"127.0.0.1:{port}"
        assert sock.recv_q == 0 and sock.send_q is None
        assert rep.net_namespace_shared is False
        assert any("another network namespace" in n for n in rep.notes)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def test_zoo_without_kcmp_falls_back_to_inodes(zoo, monkeypatch):
    """kcmp(2) refused (EPERM: another user's process under yama, a seccomp filter): sockets and
    pipes are still told apart by their unique inodes, verified; anon-inode files are not
    (verified false, a note says why) and their findings drop to info."""
    import errno

    from fdscope import speedups

    info, _rep, _doc, pid = zoo
    monkeypatch.setattr(speedups.backend, "kcmp_many",
                        lambda _pid, items: [-errno.EPERM] * len(items))
    doc = inspect_process(pid, sample=0).to_json()
    lst = _reg(doc, info["ep"], info["lst"])
    assert lst["status"] == "ok" and lst["verified"] is True
    assert _reg(doc, info["ep"], info["closed"])["status"] == "closed"
    assert _reg(doc, info["ep"], info["reused"])["status"] == "reused"
    anon = _reg(doc, info["ep"], info["efd"])
    assert anon["verified"] is False
    assert any("kcmp" in n for n in doc["notes"]), doc["notes"]
    for f in doc["findings"]:
        if f["code"].startswith("epoll_") and "unverified" in f["message"]:
            assert f["level"] == "info", f


UNLISTED = """
import json, socket, time
tcp = socket.socket()                              # never connected: unhashed, CLOSE
bound = socket.socket(); bound.bind(("127.0.0.1", 0))  # bound, no listen(): CLOSE too
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never bound: unhashed, UNCONN
print(json.dumps({"tcp": tcp.fileno(), "bound": bound.fileno(), "udp": udp.fileno()}),
      flush=True)
time.sleep(60)
"""


def test_sockets_in_no_kernel_table_are_named_from_sockfs():
    """/proc/net lists hashed sockets only; a TCP socket never connected and a UDP socket never
    bound are in no table. fdscope names them from sockfs, not `unknown`, and (fewer than five)
    raises nothing louder than info."""
    with Target(UNLISTED) as t:
        t.wait_sleeping()
        doc = inspect_process(t.pid, sample=0).to_json()
    tcp, udp = _fd(doc, t.info["tcp"])["socket"], _fd(doc, t.info["udp"])["socket"]
    assert (tcp["proto"], tcp["state"], tcp["local"]) == ("tcp", "CLOSE", None)
    bound = _fd(doc, t.info["bound"])["socket"]
    assert (bound["proto"], bound["state"]) == ("tcp", "CLOSE")
    assert (udp["proto"], udp["state"], udp["local"]) == ("udp", "UNCONN", None)
    assert all(f["level"] == "info" for f in doc["findings"]), doc["findings"]


COMPUTING = """
import hashlib, json
print(json.dumps({}), flush=True)
h = hashlib.sha256()
while True:
    h.update(b"x" * 65536)
"""


@pytest.mark.timing
def test_a_computing_process_is_cpu_bound_not_busy_polling():
    """100% CPU without I/O fds to poll (a hash loop, like sha256sum /dev/zero) is computing:
    io_model cpu_bound and no busy_polling finding."""
    with Target(COMPUTING) as t:
        rep = inspect_process(t.pid, sample=0.5)
    assert rep.cpu is not None and rep.cpu.percent > 10, rep.cpu
    assert rep.io_model.kind == "cpu_bound", rep.io_model
    assert not any(f.code == "busy_polling" for f in rep.findings)


@pytest.mark.slow
def test_epoll_server_under_churn_never_shows_a_stale_registration():
    """fdscope's own epoll server while clients connect and leave as fast as they can: 20
    scans, each registration open and the same file (kcmp), no warn or crit. A scan reads the
    set and the fd table at different moments; fdscope re-checks instead of reporting a race."""
    from fdscope.load import LoadConfig, run_load

    proc = subprocess.Popen([sys.executable, "-m", "fdscope", "serve", "epoll", "--json"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = json.loads(proc.stdout.readline())["port"]  # type: ignore[union-attr]
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                run_load(LoadConfig("127.0.0.1", port, connections=8, messages=1,
                                    size_min=10, size_max=100))

        clients = threading.Thread(target=churn, daemon=True)
        clients.start()
        try:
            for _ in range(20):
                doc = inspect_process(proc.pid, sample=0).to_json()
                regs = [r for s in doc["epoll"] for r in s["registrations"]]
                assert all(r["status"] == "ok" for r in regs), regs
                loud = [f for f in doc["findings"] if f["level"] != "info"]
                assert not loud, loud
        finally:
            stop.set()
            clients.join(timeout=30)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_fds_closed_during_the_scan_are_not_listed_nor_counted(zoo):
    """An fd whose fdinfo is gone by the time the scan reads it was closed meanwhile: it is left
    out of `fds` and `open_fds` (not listed with null flags), and a note counts it."""
    from fdscope.proc import Proc

    info, _rep, doc, pid = zoo
    victim = info["efd"]

    class ClosingProc(Proc):
        def read_many(self, *parts, names, pid=None):
            names = list(names)
            texts, gone = super().read_many(*parts, names=names, pid=pid)
            name = str(victim) if parts[-1] == "fdinfo" else f"fdinfo/{victim}"
            if texts.pop(name, None) is not None:
                gone += 1
            return texts, gone

    after = inspect_process(pid, proc=ClosingProc(), sample=0).to_json()
    assert victim not in [e["fd"] for e in after["fds"]]
    assert after["summary"]["open_fds"] == doc["summary"]["open_fds"] - 1
    assert all(e["flags"] is not None for e in after["fds"])
    assert any("closed or exited during the scan" in n for n in after["notes"]), after["notes"]
