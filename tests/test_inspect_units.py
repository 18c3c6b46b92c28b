"""Pieces of inspect checked on their own: fast paths against the contract parsers, the reads
a report makes, sock_diag against ss, io_model and findings rules, --watch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import textwrap

import pytest
from inspect_support import Target

import fdscope.inspect.model as I
from fdscope import netdiag
from fdscope.inspect.findings import findings_for
from fdscope.inspect.iomodel import classify
from fdscope.inspect.report import inspect_process
from fdscope.inspect.watch import iter_watch
from fdscope.parse.fdinfo import epoll_rows, kernel_dev_to_userspace, parse_fdinfo
from fdscope.parse.net import _only_inodes, _unix_rows, parse_inet, parse_unix, socket_rows
from fdscope.proc import Proc

UNIX_TEXT = (
    "Num       RefCount Protocol Flags    Type St Inode Path\n"
    "0000000000000000: 00000002 00000000 00010000 0001 01 40001 /run/app.sock\n"
    "0000000000000000: 00000002 00000000 00000000 0001 03 40002 @abstract name\n"
    "0000000000000000: 00000003 00000000 00000000 0002 01 40003\n"
    "0000000000000000: 00000003 00000000 00000000 0005 03 40004 /tmp/with space\n"
)


def _contract_rows(rows):
    return sorted((r.inode, r.proto, r.state, r.local, r.remote, r.recv_q, r.send_q) for r in rows)


def test_unix_fast_path_matches_parse_unix():
    assert sorted(_unix_rows(UNIX_TEXT, None)) == _contract_rows(parse_unix(UNIX_TEXT))
    with open("/proc/self/net/unix") as f:
        live = f.read()
    assert sorted(_unix_rows(live, None)) == _contract_rows(parse_unix(live))
    assert [r[0] for r in _unix_rows(UNIX_TEXT, {40002})] == [40002]
    # a path holding a newline continues on the next line: the fast path defers to the parser
    broken = UNIX_TEXT + "0000000000000000: 00000002 00000000 00010000 0001 01 40005 /a\nb\n"
    assert _unix_rows(broken, None) is None
    assert socket_rows("unix", broken, {40005}) == [(40005, "unix", "LISTEN", "/a\nb", None,
                                                      None, None)]


def test_epoll_fast_path_matches_parse_fdinfo():
    text = ("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n"
            "tfd:        5 events:       19 data:     7f0000000005  pos:0 ino:1a2b sdev:9\n"
            "tfd:       12 events: 80002019 data: ffffffffffffffff  pos:0 ino:3 sdev:800003\n")
    fast = epoll_rows(text)
    slow = [(t.tfd, t.events, t.data, t.ino, kernel_dev_to_userspace(t.sdev))
            for t in parse_fdinfo(text).epoll]
    assert fast == slow
    assert fast[1][4] == os.makedev(8, 3)
    old = "pos:\t0\nflags:\t02\ntfd:        5 events:       19 data:                5\n"
    assert epoll_rows(old) is None  # 3.8-4.x form: the contract parser handles it
    assert [t.tfd for t in parse_fdinfo(old).epoll] == [5]


def test_only_inodes_keeps_header_and_malformed_rows():
    with open("/proc/self/net/tcp") as f:
        text = f.read()
    head = text.splitlines()[0]
    assert _only_inodes(text, "tcp", set()) is None or \
        _only_inodes(text, "tcp", set()).splitlines() == [head]
    bad = head + "\n   0: garbage\n"
    assert _only_inodes(bad, "tcp", {1}).splitlines() == [head, "   0: garbage"]


def test_inet_rows_match_parser_for_a_live_listener():
    with socket.create_server(("127.0.0.1", 0)) as s:
        ino = os.fstat(s.fileno()).st_ino
        with open("/proc/self/net/tcp") as f:
            text = f.read()
        rows = socket_rows("tcp", text, {ino})
        assert rows == [r for r in _contract_rows(parse_inet(text, "tcp")) if r[0] == ino]
        assert rows[0][2:4] == ("LISTEN", f"127.0.0.1:{s.getsockname()[1]}")


HOLDER = textwrap.dedent(
    """
    import json, os, select, socket, time
    ep = select.epoll()
    keep = [socket.socketpair() for _ in range(700)]
    lst = socket.create_server(("127.0.0.1", 0), backlog=7)
    tcp = [socket.create_connection(lst.getsockname()) for _ in range(5)]
    pipes = [os.pipe() for _ in range(300)]
    late = select.epoll()
    for a, b in keep[:100]:
        ep.register(a.fileno(), select.EPOLLIN | select.EPOLLET)
    late.register(lst.fileno(), select.EPOLLIN)
    print(json.dumps({"n": len(os.listdir("/proc/self/fd")), "ep": ep.fileno(),
                      "late": late.fileno()}), flush=True)
    time.sleep(600)
    """
)


class ReadCountingProc(Proc):
    """Records every file read, as (pid, directory, name) for files below /proc/PID."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[object, ...]] = []

    def read_text(self, *parts, pid=None):
        self.reads.append(parts)
        return super().read_text(*parts, pid=pid)

    def read_many(self, *parts, names, pid=None):
        names = list(names)
        for name in names:
            path = (*parts, *name.split("/"))
            self.reads.append(path[:2] + (int(path[2]) if path[1] == "fdinfo" else path[2],))
        return super().read_many(*parts, names=names, pid=pid)


def test_each_net_table_and_fdinfo_read_once():
    with Target(HOLDER) as t:
        proc = ReadCountingProc()
        rep = inspect_process(t.pid, proc=proc, sample=0)
        net_reads = [p[2] for p in proc.reads if len(p) == 3 and p[1] == "net"]
        assert len(net_reads) == len(set(net_reads)) and "unix" in net_reads and "tcp" in net_reads
        fdinfo_reads = [p[2] for p in proc.reads if len(p) == 3 and p[1] == "fdinfo"]
        # the child's own listdir counted the directory fd it had open: n - 1 fds remain
        assert len(rep.fds) == t.info["n"] - 1
        assert len(fdinfo_reads) == len(set(fdinfo_reads)) == len(rep.fds)  # < 4096: all flags
        assert [(s.epfd, len(s.registrations)) for s in rep.epoll] == [
            (t.info["ep"], 100), (t.info["late"], 1)]
        doc = rep.to_json()
        lst = [e for e in doc["fds"] if e["socket"] and e["socket"]["state"] == "LISTEN"]
        assert lst[0]["socket"]["recv_q"] == 5 and lst[0]["socket"]["send_q"] == 7
        assert doc["summary"]["socket_states"] == {"CONNECTED": 1400, "ESTABLISHED": 5,
                                                   "LISTEN": 1}
        assert all(e["flags"] is not None for e in doc["fds"])
        needed = ReadCountingProc()
        small = inspect_process(t.pid, proc=needed, sample=0, flags="needed")
        fdinfo = {p[2] for p in needed.reads if len(p) == 3 and p[1] == "fdinfo"}
        et_targets = {r.tfd for r in small.epoll[0].registrations}
        assert fdinfo >= et_targets | {t.info["ep"], t.info["late"]}
        assert len(fdinfo) < t.info["n"] and any("flags/pos read for" in n for n in small.notes)


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss")
def test_sock_diag_agrees_with_ss():
    lst = socket.create_server(("127.0.0.1", 0), backlog=9)
    clients = [socket.create_connection(lst.getsockname()) for _ in range(3)]
    try:
        ino = os.fstat(lst.fileno()).st_ino
        assert netdiag.inet_listen_queues([ino]) == {ino: (3, 9)}
        port = lst.getsockname()[1]
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                             text=True).stdout.split()
        assert (int(out[1]), int(out[2])) == (3, 9)  # State Recv-Q Send-Q ...
        with socket.socket(socket.AF_UNIX) as u:
            u.bind(f"\0fdscope-test-{os.getpid()}")
            u.listen(4)
            c = socket.socket(socket.AF_UNIX)
            c.connect(f"\0fdscope-test-{os.getpid()}")
            uino = os.fstat(u.fileno()).st_ino
            assert netdiag.unix_listen_queues([uino]) == {uino: (1, 4)}
            c.close()
    finally:
        for c in clients:
            c.close()
        lst.close()


def _report(threads, fds=(), epoll=(), cpu=None, highest=None, soft=1024, open_fds=None):
    rep = I.InspectReport(pid=1, name="t", cmdline=[], state="S")
    rep.threads = list(threads)
    rep.fds = list(fds)
    rep.epoll = list(epoll)
    rep.cpu = cpu
    rep.summary.highest_fd = highest
    rep.summary.soft_limit = soft
    rep.summary.open_fds = open_fds if open_fds is not None else len(rep.fds)
    return rep


def _t(tid, syscall, state="S", args=None, wchan=None, cpu=None):
    return I.ThreadInfo(tid, "t", state, syscall, wchan, args or {}, None, cpu)


def _sock(fd, state="ESTABLISHED", recv_q=0, send_q=0, flags=("O_RDWR",)):
    return I.FdEntry(fd, "socket", f"socket:[{fd + 100}]", fd + 100, flags, 0,
                     I.SocketInfo("tcp", state, "127.0.0.1:1", None, recv_q, send_q), None)


def test_io_model_classification_rules():
    reg = I.Registration(4, 0x80000001, ("EPOLLIN", "EPOLLET"), 4, 1, 1, "ok", (4,), True)
    ep = I.EpollSet(3, (reg, reg._replace(tfd=5, mask=1)))
    m = classify(_report([_t(1, "epoll_wait", args={"epfd": 3, "timeout": -1})], epoll=[ep]))
    assert m == I.IoModel("epoll", "epoll event loop: 1 thread in epoll_wait on fd 3 "
                                   "(2 targets, 1 edge-triggered)")
    m = classify(_report([_t(1, "pselect6", args={"nfds": 12})]))
    assert m.kind == "select" and "nfds=12" in m.summary
    m = classify(_report([_t(1, "poll", args={"nfds": 3, "timeout": -1})]))
    assert m.kind == "poll" and "nfds=3" in m.summary
    m = classify(_report([_t(1, "recvfrom", args={"fd": 4})]))
    assert m == I.IoModel("blocking", "blocking, single connection: 1 thread in recvfrom on fd 4")
    m = classify(_report([_t(i, "recvfrom", args={"fd": i}) for i in range(5)]
                         + [_t(9, "accept4", args={"fd": 3})]))
    assert m.kind == "threads" and m.summary == \
        "thread per connection: 5 threads blocked in recvfrom, 1 in accept4"
    sig = _sock(4, flags=("O_RDWR", "O_NONBLOCK", "O_ASYNC"))
    m = classify(_report([_t(1, "rt_sigsuspend")], fds=[sig]))
    assert m.kind == "signal_driven" and "1 fd(s) with O_ASYNC (4)" in m.summary
    m = classify(_report([_t(1, None, wchan="do_epoll_wait")], epoll=[ep]))
    assert m.kind == "epoll"  # syscall unreadable: wchan tells
    epfd = I.FdEntry(3, "epoll", "anon_inode:[eventpoll]", None, ("O_RDWR",), 0, None)
    spin = _t(1, "epoll_wait", state="R", args={"epfd": 3, "timeout": 0}, cpu=99.0)
    m = classify(_report([spin._replace(blocked=0)], fds=[epfd], epoll=[ep],
                         cpu=I.Cpu(99.0, 0.5, "sample")))
    assert m.kind == "busy_polling" and "99% CPU" in m.summary
    # a thread that slept during the sample waited at times: not a busy poll
    m = classify(_report([spin._replace(blocked=40)], fds=[epfd], epoll=[ep],
                         cpu=I.Cpu(99.0, 0.5, "sample")))
    assert m.kind == "unknown" and "blocked 40 time(s)" in m.summary
    # at full CPU without fds to poll, a process computes (sha256sum /dev/zero)
    work = _t(1, "running", state="R", cpu=99.0)._replace(blocked=0)
    chr_fd = I.FdEntry(3, "chr", "/dev/zero", 5, ("O_RDONLY",), 0, None)
    m = classify(_report([work], fds=[chr_fd], cpu=I.Cpu(99.0, 0.5, "sample")))
    assert m.kind == "cpu_bound" and findings_for(_report([work], fds=[chr_fd])) == []
    m = classify(_report([_t(1, "running", state="R")]))
    assert m.kind == "unknown" and "--sample" in m.summary
    assert classify(_report([_t(1, "clock_nanosleep")])).kind == "idle"


def test_io_model_from_waits_seen_during_a_sample():
    """A loaded loop caught running is classified by the calls the sample saw it block in;
    a thread never seen blocking at high CPU is busy polling."""
    reg = I.Registration(4, 1, ("EPOLLIN",), 4, 1, 1, "ok", (4,), True)
    ep = I.EpollSet(3, (reg,))
    busy = I.Cpu(90.0, 0.25, "sample", 50)
    seen = _t(1, "running", state="R", cpu=90.0)._replace(
        waits={"epoll_wait": 7}, wait_args={"epfd": 3, "maxevents": 8, "timeout": -1})
    m = classify(_report([seen], epoll=[ep], cpu=busy))
    assert m.kind == "epoll" and "busy: 90% CPU" in m.summary
    assert "1 thread in epoll_wait on fd 3 (1 target, 0 edge-triggered)" in m.summary
    polled = _t(1, "write", state="R")._replace(waits={"poll": 3}, wait_args={"nfds": 21})
    assert classify(_report([polled])).summary.startswith("poll() loop, nfds=21: 1 thread in poll")
    never = _t(1, "running", state="R", cpu=90.0)._replace(blocked=0)
    epfd = I.FdEntry(3, "epoll", "anon_inode:[eventpoll]", None, ("O_RDWR",), 0, None)
    assert classify(_report([never], fds=[epfd], epoll=[ep], cpu=busy)).kind == "busy_polling"
    # never waited but moved bytes (/proc/PID/io): a loop saturated with work, not an idle poll
    idle = busy._replace(io_bytes=0)
    assert classify(_report([never], fds=[epfd], epoll=[ep], cpu=idle)).kind == "busy_polling"
    working = busy._replace(io_bytes=2_500_000)
    m = classify(_report([never], fds=[epfd], epoll=[ep], cpu=working))
    assert m.kind == "epoll" and "saturated" in m.summary and "10.0 MB/s" in m.summary, m
    assert classify(_report([never], fds=[epfd], cpu=working)).kind == "unknown"


def test_io_model_thread_per_connection_under_gil_contention():
    socks = [_sock(i) for i in range(4, 8)]
    threads = [_t(1, "accept4", args={"fd": 3})._replace(syscall="futex"),
               _t(2, "recvfrom", args={"fd": 4}), _t(3, "futex"), _t(4, "futex")]
    m = classify(_report(threads, fds=socks))
    assert m.kind == "threads" and "lock" in m.summary
    # one connection and a helper thread on a lock is still a blocking single-connection server
    one = classify(_report([_t(1, "recvfrom", args={"fd": 4}), _t(2, "futex")], fds=socks[:1]))
    assert one.kind == "blocking"
    # caught under load: one worker in recv, the others running (seen in a CI run)
    working = [_t(1, "running", state="R"), _t(2, "recvfrom", args={"fd": 4}),
               _t(3, "running", state="R"), _t(4, "sendto", state="R")]
    m = classify(_report(working, fds=socks))
    assert m == I.IoModel("threads", "thread per connection: 1 thread blocked in recvfrom, "
                                     "3 on CPU")
    assert classify(_report(working[:2], fds=socks[:1])).kind == "blocking"


def test_findings_rules():
    fds = [_sock(i) for i in range(3, 9)]
    rep = _report([_t(1, "pselect6", args={"nfds": 1500})], fds=fds, highest=1499)
    codes = {f.code: f for f in findings_for(rep)}
    assert codes["select_fd_setsize"].level == "crit" and "nfds=1500" in codes["select_fd_setsize"].message
    rep = _report([_t(1, "pselect6", args={"nfds": 9})], fds=fds, highest=1030)
    assert "fd 1030 >= FD_SETSIZE" in {f.code: f for f in findings_for(rep)}["select_fd_setsize"].message
    rep = _report([_t(1, "epoll_wait")], fds=fds, highest=8, soft=7, open_fds=6)
    f = {f.code: f for f in findings_for(rep)}["fd_limit_near"]
    assert f.level == "warn" and "6 fds open of a soft limit of 7 (86%)" in f.message
    rep = _report([], fds=fds, highest=8, soft=6, open_fds=6)
    assert {f.code: f for f in findings_for(rep)}["fd_limit_near"].level == "crit"
    rep = _report([], fds=fds, soft=1000)
    assert findings_for(rep) == []
    lst = [_sock(3, "LISTEN", recv_q=9, send_q=10), _sock(4, "LISTEN", recv_q=11, send_q=10)]
    codes = {f.code: f for f in findings_for(_report([], fds=lst))}
    assert codes["listen_backlog_filling"].level == "info" and "fd 3" in codes["listen_backlog_filling"].message
    # full, but no drop ever counted in the namespace (or counters unreadable): warn
    assert codes["listen_backlog_full"].level == "warn" and "fd 4" in codes["listen_backlog_full"].message
    dropping = _report([], fds=lst)
    dropping.listen_drops = {"overflows": 12, "drops": 12, "overflows_during_scan": 3,
                             "drops_during_scan": 3}
    full = {f.code: f for f in findings_for(dropping)}["listen_backlog_full"]
    assert full.level == "crit" and "dropped 6 connection(s) during the scan" in full.message
    assert full.fds == (4,)
    cw = [_sock(i, "CLOSE_WAIT") for i in range(3, 5)]
    (f,) = findings_for(_report([], fds=cw))
    assert f.code == "close_wait_pile" and f.level == "info"
    excl = I.Registration(4, 0x10000001, ("EPOLLIN", "EPOLLEXCLUSIVE"), 4, 50, 9, "ok", (4,), True)
    sets = [I.EpollSet(5, (excl,)), I.EpollSet(6, (excl,))]
    (f,) = findings_for(_report([], fds=[_sock(4)._replace(inode=50)], epoll=sets))
    assert f.code == "epoll_multi_set" and f.level == "info" and "EPOLLEXCLUSIVE" in f.message


def test_findings_follow_impact():
    """Levels: crit broken now, warn very likely a bug, info a design observation; nothing from
    a coincidence of numbers."""
    # a soft limit lowered to 0 or below the open count is at the limit, not "ok"
    for soft in (0, 3):
        (f,) = findings_for(_report([], fds=[_sock(i) for i in range(3, 8)], soft=soft))
        assert f.code == "fd_limit_near" and f.level == "crit" and "at or over" in f.message
    # a connection in two epoll sets two threads wait on: warn; waited on in turn by one
    # thread (postgres), or a listener shared by per-thread loops: info
    reg = I.Registration(4, 1, ("EPOLLIN",), 4, 104, 9, "ok", (4,), True)
    sets = [I.EpollSet(5, (reg,)), I.EpollSet(6, (reg,))]
    loops = [_t(1, "epoll_wait", args={"epfd": 5}), _t(2, "epoll_wait", args={"epfd": 6})]
    (f,) = findings_for(_report(loops, fds=[_sock(4)], epoll=sets))
    assert (f.code, f.level, f.fds) == ("epoll_multi_set", "warn", (4,))
    (f,) = findings_for(_report(loops[:1], fds=[_sock(4)], epoll=sets))
    assert (f.code, f.level) == ("epoll_multi_set", "info")
    (f,) = findings_for(_report(loops, fds=[_sock(4, "LISTEN")], epoll=sets))
    assert (f.code, f.level) == ("epoll_multi_set", "info")
    # two different eventfds (one shared anon inode) in two sets are two files: nothing
    efd = I.FdEntry(7, "eventfd", "anon_inode:[eventfd]", None, ("O_RDWR",), 0, None)
    e1 = I.Registration(7, 1, ("EPOLLIN",), 7, 1038, 14, "ok", (7,), True)
    e2 = e1._replace(tfd=8, data=8, open_as=(8,))
    assert findings_for(_report([], fds=[efd, efd._replace(fd=8)],
                                epoll=[I.EpollSet(5, (e1,)), I.EpollSet(6, (e2,))])) == []
    # ... and unverified (kcmp refused) they cannot be told apart: still nothing
    assert findings_for(_report([], fds=[efd, efd._replace(fd=8)], epoll=[
        I.EpollSet(5, (e1._replace(verified=False),)),
        I.EpollSet(6, (e2._replace(verified=False),))])) == []
    # EPOLLET on a blocking eventfd: one read drains it, no stall; on a blocking socket: warn
    et = e1._replace(mask=0x80000001)
    assert findings_for(_report([], fds=[efd], epoll=[I.EpollSet(5, (et,))])) == []
    (f,) = findings_for(_report([], fds=[_sock(7)], epoll=[I.EpollSet(5, (
        et._replace(inode=107),))]))
    assert (f.code, f.level) == ("epoll_et_blocking", "warn")
    # a reused registration the kernel confirmed is crit; unconfirmed, info
    reused = e1._replace(status="reused", open_as=(9,))
    assert findings_for(_report([], fds=[efd], epoll=[I.EpollSet(5, (reused,))]))[0].level \
        == "crit"
    assert findings_for(_report([], fds=[efd], epoll=[I.EpollSet(5, (
        reused._replace(verified=False),))]))[0].level == "info"
    # reset TCP connections held open count with CLOSE_WAIT for the leak
    held = [_sock(i, "CLOSE") for i in range(3, 6)] + [_sock(i, "CLOSE_WAIT") for i in (6, 7)]
    (f,) = findings_for(_report([], fds=held))
    assert (f.code, f.level, f.fds) == ("close_wait_pile", "warn", (3, 4, 5, 6, 7))
    assert "2 in CLOSE_WAIT" in f.message and "3 TCP in CLOSE" in f.message


def test_watch_iterator_with_fake_sleep(tmp_path):
    from inspect_support import fake_proc

    from fdscope.proc import Proc

    base = fake_proc(tmp_path, 4242, fds={0: "pipe:[1]", 1: "socket:[2]"})
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        os.symlink("pipe:[9]", base / "fd" / str(10 + len(slept)))

    samples = list(iter_watch(4242, 2.0, proc=Proc(str(tmp_path)), count=3, sleep=sleep))
    assert slept == [2.0, 2.0]
    assert [s["open_fds"] for s in samples] == [2, 3, 4]
    assert [s["delta"] for s in samples] == [{}, {"pipe": 1}, {"pipe": 1}]
    assert samples[2]["by_type"] == {"pipe": 3, "socket": 1}
    json.dumps(samples)


def test_target_start_times_out_when_the_child_never_prints():
    import time

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="printed nothing in 1 s"):
        Target("import time; time.sleep(60)", timeout=1)
    with pytest.raises(RuntimeError, match="exited: .*boom"):
        Target("raise SystemExit('boom')")
    assert time.monotonic() - t0 < 30


def test_a_malformed_registration_line_costs_only_itself():
    from fdscope.inspect.epoll import parse_sets

    good = "tfd:        {0} events:       19 data:                {0}  pos:0 ino:6{0} sdev:8\n"
    text = ("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\n" + good.format(4) + "tfd: garbage\n"
            + good.format(5))
    sets, errors = parse_sets({3: text})
    assert [reg[0] for reg in sets[3]] == [4, 5]
    assert errors == ["epoll fd 3: 1 registration line(s) unreadable, left out: cannot parse "
                      "fdinfo: epoll tfd: 'garbage' is not a base-10 number"]
