"""/proc/PID/task/TID/syscall parsing, syscall tables and argument decoding."""

import os
import platform
import select
import socket
import threading
import time

import pytest

from fdscope.errors import ParseError
from fdscope.parse.syscall import (
    AARCH64_SYSCALLS,
    X86_64_SYSCALLS,
    decode_args,
    parse_syscall,
    syscall_name,
    syscall_number,
)


def test_running():
    state = parse_syscall("running\n")
    assert state.running and state.nr is None and state.state == "running"


def test_not_in_syscall():
    state = parse_syscall("-1 0x7ffdb2fc3428 0x7f4421f162ad\n")
    assert (state.running, state.nr, state.args) == (False, None, ())
    assert (state.sp, state.pc, state.state) == (0x7FFDB2FC3428, 0x7F4421F162AD, "no_syscall")


def test_in_syscall():
    text = "232 0x5 0x7f0000001000 0x400 0xffffffffffffffff 0x0 0x8 0x7ffdb2fc3428 0x7f4421f162ad\n"
    state = parse_syscall(text)
    assert state.nr == 232 and state.state == "syscall"
    assert state.args == (5, 0x7F0000001000, 0x400, 2**64 - 1, 0, 8)
    assert syscall_name(state.nr, "x86_64") == "epoll_wait"
    assert decode_args("epoll_wait", state.args) == {"epfd": 5, "maxevents": 1024, "timeout": -1}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sleeping",
        "0 0x1 0x2",
        "-1 0x1",
        "0 1 2 3 4 5 6 7 8",
        "0x1 0x1 0x1",
        "232 0x5 0x1 0x2 0x3 0x4 0x5 0x6 0x7 0x8",
    ],
)
def test_malformed(text):
    with pytest.raises(ParseError):
        parse_syscall(text)


@pytest.mark.parametrize(
    ("name", "x86", "arm"),
    [
        ("read", 0, 63),
        ("write", 1, 64),
        ("readv", 19, 65),
        ("recvfrom", 45, 207),
        ("sendto", 44, 206),
        ("recvmsg", 47, 212),
        ("sendmsg", 46, 211),
        ("recvmmsg", 299, 243),
        ("sendmmsg", 307, 269),
        ("accept", 43, 202),
        ("accept4", 288, 242),
        ("connect", 42, 203),
        ("select", 23, None),
        ("poll", 7, None),
        ("epoll_wait", 232, None),
        ("pause", 34, None),
        ("pselect6", 270, 72),
        ("ppoll", 271, 73),
        ("epoll_pwait", 281, 22),
        ("epoll_pwait2", 441, 441),
        ("futex", 202, 98),
        ("nanosleep", 35, 101),
        ("clock_nanosleep", 230, 115),
        ("io_uring_enter", 426, 426),
        ("wait4", 61, 260),
        ("waitid", 247, 95),
        ("rt_sigsuspend", 130, 133),
        ("rt_sigtimedwait", 128, 137),
        ("restart_syscall", 219, 128),
        ("openat", 257, 56),
        ("close", 3, 57),
        ("fsync", 74, 82),
        ("splice", 275, 76),
        ("sendfile", 40, 71),
        ("msgrcv", 70, 188),
        ("semop", 65, 193),
        ("flock", 73, 32),
        ("fcntl", 72, 25),
        ("futex_wait", 455, 455),
    ],
)
def test_tables(name, x86, arm):
    assert syscall_number(name, "x86_64") == x86
    assert syscall_number(name, "aarch64") == arm
    if x86 is not None:
        assert syscall_name(x86, "amd64") == name
    if arm is not None:
        assert syscall_name(arm, "arm64") == name


def test_tables_are_whole():
    assert len(X86_64_SYSCALLS) > 370 and len(AARCH64_SYSCALLS) > 310
    assert syscall_name(99999, "x86_64") == "syscall_99999"
    assert syscall_name(0, "mips") == "syscall_0"
    assert syscall_name(0x40000000 | 45, "x86_64") == "recvfrom"  # x32 ABI bit


def test_decode_args():
    assert decode_args("select", (1025, 1, 0, 0, 0, 0)) == {"nfds": 1025, "timeout": -1}
    assert decode_args("pselect6", (12, 1, 0, 0, 0x7FFF0000, 0)) == {"nfds": 12}
    assert decode_args("poll", (0x7FFF0000, 3, 2500, 0, 0, 0)) == {"nfds": 3, "timeout": 2500}
    assert decode_args("ppoll", (0x7FFF0000, 3, 0, 0, 8, 0)) == {"nfds": 3, "timeout": -1}
    assert decode_args("epoll_pwait2", (7, 0x1000, 64, 0x7FFF0000, 0, 8)) == {
        "epfd": 7,
        "maxevents": 64,
    }
    assert decode_args("epoll_pwait2", (7, 0x1000, 64, 0, 0, 8)) == {
        "epfd": 7,
        "maxevents": 64,
        "timeout": -1,
    }
    assert decode_args("recvfrom", (9, 0x1000, 4096, 0, 0, 0)) == {"fd": 9, "count": 4096}
    assert decode_args("accept4", (3, 0, 0, 0x80800, 0, 0)) == {"fd": 3}
    assert decode_args("connect", (4, 0x1000, 16, 0, 0, 0)) == {"fd": 4}
    assert decode_args("sendfile", (5, 6, 0, 100, 0, 0)) == {"out_fd": 5, "in_fd": 6}
    assert decode_args("futex", (0x1000, 0x80, 2, 0, 0, 0)) == {"op": 0}
    assert decode_args("wait4", (2**64 - 1, 0, 0, 0, 0, 0)) == {"pid": -1}
    assert decode_args("nanosleep", (0x1000, 0, 0, 0, 0, 0)) == {}
    assert decode_args("read", ()) == {}


def _syscall_of(tid):
    with open(f"/proc/self/task/{tid}/syscall") as f:
        return parse_syscall(f.read())


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="no syscall table")
def test_live_threads_blocked_in_known_syscalls():
    ep = select.epoll()
    a, b = socket.socketpair()
    tids = {}
    ready = threading.Barrier(3)

    def in_epoll():
        tids["epoll"] = threading.get_native_id()
        ready.wait()
        ep.poll(5)

    def in_recv():
        tids["recv"] = threading.get_native_id()
        ready.wait()
        a.recv(10)

    ep.register(a.fileno(), select.EPOLLIN)
    threads = [threading.Thread(target=in_epoll), threading.Thread(target=in_recv)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        deadline = time.monotonic() + 5
        seen = {}
        while time.monotonic() < deadline:
            seen = {k: _syscall_of(t) for k, t in tids.items()}
            if all(s.nr is not None for s in seen.values()):
                names = {k: syscall_name(s.nr, platform.machine()) for k, s in seen.items()}
                if names["epoll"].startswith("epoll") and names["recv"] in (
                    "recvfrom",
                    "recvmsg",
                    "read",
                ):
                    break
            time.sleep(0.01)
        names = {k: syscall_name(s.nr, platform.machine()) for k, s in seen.items()}
        assert names["epoll"] in ("epoll_wait", "epoll_pwait", "epoll_pwait2")
        assert decode_args(names["epoll"], seen["epoll"].args)["epfd"] == ep.fileno()
        assert names["recv"] in ("recvfrom", "recvmsg", "read")
        assert decode_args(names["recv"], seen["recv"].args)["fd"] == a.fileno()
    finally:
        b.send(b"x")
        b.close()
        for t in threads:
            t.join(10)
        a.close()
        ep.close()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="no syscall table")
def test_live_select_poll_accept_decoded():
    r, w = os.pipe()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    tids = {}
    ready = threading.Barrier(4)

    def in_select():
        tids["select"] = threading.get_native_id()
        ready.wait()
        select.select([r], [], [], 5)

    def in_poll():
        tids["poll"] = threading.get_native_id()
        p = select.poll()
        p.register(r, select.POLLIN)
        ready.wait()
        p.poll(5000)

    def in_accept():
        tids["accept"] = threading.get_native_id()
        ready.wait()
        conn, _ = srv.accept()
        conn.close()

    threads = [threading.Thread(target=f) for f in (in_select, in_poll, in_accept)]
    for t in threads:
        t.start()
    try:
        ready.wait()
        expected = {
            # glibc implements select() with the pselect6 syscall (on aarch64 there is no other).
            "select": ({"select", "pselect6"}, {"nfds": r + 1}),
            "poll": ({"poll", "ppoll"}, {"nfds": 1}),
            "accept": ({"accept", "accept4"}, {"fd": srv.fileno()}),
        }
        deadline = time.monotonic() + 5
        while True:
            seen = {k: _syscall_of(tid) for k, tid in tids.items()}
            names = {
                k: syscall_name(s.nr, platform.machine()) if s.nr is not None else None
                for k, s in seen.items()
            }
            if all(names[k] in expected[k][0] for k in expected) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        for key, (calls, args) in expected.items():
            assert names[key] in calls, (key, names[key])
            decoded = decode_args(names[key], seen[key].args)
            assert {k: decoded[k] for k in args} == args, (key, decoded)
        assert decode_args(names["poll"], seen["poll"].args).get("timeout", 5000) == 5000
    finally:
        os.write(w, b"x")
        socket.create_connection(srv.getsockname()).close()
        for t in threads:
            t.join(10)
        srv.close()
        os.close(r)
        os.close(w)
