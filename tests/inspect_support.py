"""Live targets for the inspect tests: a fixture "zoo" process with known fds, tiny servers in
the three classic I/O models, and a fake /proc tree builder.

Each live target is a `python -c SCRIPT` child that prints one JSON line (its fd numbers or its
port) once ready and then blocks; `Target` kills it on exit.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from fdscope.proc import Proc

ZOO = textwrap.dedent(
    r"""
    import json, os, select, socket, sys, tempfile, time
    E = select
    out = {}
    lst = socket.create_server(("127.0.0.1", 0), backlog=16)
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    srv.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("127.0.0.1", 0))
    ua, ub = socket.socketpair()
    pr, pw = os.pipe()
    efd = os.eventfd(0)
    path = os.path.join(sys.argv[1], "zoo.log")
    f = open(path, "a"); f.write("hello\n"); f.flush()
    # Peers closed, never closed here: CLOSE_WAIT sockets.
    cw = []
    for _ in range(5):
        c = socket.create_connection(lst.getsockname()); s, _ = lst.accept(); c.close(); cw.append(s)
    # A listener with backlog 1 and 2 unaccepted connections: accept queue over the backlog.
    full = socket.create_server(("127.0.0.1", 0), backlog=1)
    pending = []
    for _ in range(3):
        c = socket.socket(); c.setblocking(False); c.connect_ex(full.getsockname()); pending.append(c)
    time.sleep(0.2)
    ep = E.epoll()
    ep.register(lst.fileno(), E.EPOLLIN)                                # level-triggered
    ep.register(srv.fileno(), E.EPOLLIN | E.EPOLLET)                    # ET on a non-blocking fd
    ep.register(pr, E.EPOLLIN | E.EPOLLET)                              # ET on a blocking pipe
    ep.register(udp.fileno(), E.EPOLLIN | E.EPOLLONESHOT)               # ONESHOT, fired below
    ep.register(ua.fileno(), E.EPOLLIN | E.EPOLLEXCLUSIVE)              # EXCLUSIVE
    ep.register(cli.fileno(), E.EPOLLIN | E.EPOLLRDHUP)                 # RDHUP
    ep.register(efd, E.EPOLLIN)                                         # anon inode target
    udp.sendto(b"x", udp.getsockname())
    time.sleep(0.05)
    fired = [fd for fd, _ in ep.poll(1)]
    ep2 = E.epoll()
    ep2.register(lst.fileno(), E.EPOLLIN)                               # same file, 2nd set
    # reused: register X, keep its file alive with a dup, then dup2 another file onto X.
    ra, rb = socket.socketpair()
    x = ra.fileno()
    ep.register(x, E.EPOLLIN)
    keep = os.dup(x)
    os.dup2(pw, x)
    # closed: register Y, dup it, close the original number.
    ca, cb = socket.socketpair()
    y = ca.detach()
    ep.register(y, E.EPOLLIN)
    ydup = os.dup(y)
    os.close(y)
    out = dict(lst=lst.fileno(), cli=cli.fileno(), srv=srv.fileno(), udp=udp.fileno(),
               ua=ua.fileno(), ub=ub.fileno(), pr=pr, pw=pw, efd=efd, file=f.fileno(), path=path,
               cw=[s.fileno() for s in cw], full=full.fileno(), ep=ep.fileno(), ep2=ep2.fileno(),
               reused=x, reused_keep=keep, rb=rb.fileno(), closed=y, closed_dup=ydup,
               cb=cb.fileno(), fired=fired, lst_addr=list(lst.getsockname()),
               udp_addr=list(udp.getsockname()), full_addr=list(full.getsockname()))
    print(json.dumps(out), flush=True)
    time.sleep(600)
    """
)

# A process with N dense fds (no holes: the fd count from st_size needs no listing): unix pairs,
# loopback TCP pairs, pipes, an epoll set over some of them.
MANY = textwrap.dedent(
    """
    import json, os, resource, select, socket, sys, time
    n = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    ep = select.epoll()
    keep = []
    lst = socket.create_server(("127.0.0.1", 0))
    for _ in range(50):
        c = socket.create_connection(lst.getsockname()); s, _a = lst.accept(); keep += [c, s]
        ep.register(c.fileno(), select.EPOLLIN | select.EPOLLET)
    while len(os.listdir("/proc/self/fd")) < n - 4:
        a, b = socket.socketpair(); r, w = os.pipe(); keep += [a, b, r, w]
        ep.register(a.fileno(), select.EPOLLIN)
        ep.register(r, select.EPOLLIN)
    print(json.dumps({"fds": len(os.listdir("/proc/self/fd"))}), flush=True)
    time.sleep(600)
    """
)


ASYNCIO_SERVER = textwrap.dedent(
    """
    import asyncio, json
    async def handle(r, w):
        while data := await r.read(100):
            w.write(data); await w.drain()
        w.close()
    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(json.dumps({"port": srv.sockets[0].getsockname()[1]}), flush=True)
        await srv.serve_forever()
    asyncio.run(main())
    """
)

SELECT_SERVER = textwrap.dedent(
    """
    import json, select, socket
    lst = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": lst.getsockname()[1]}), flush=True)
    conns = []
    while True:
        ready, _, _ = select.select([lst] + conns, [], [])
        for s in ready:
            if s is lst:
                conns.append(lst.accept()[0])
            elif not (data := s.recv(100)):
                conns.remove(s); s.close()
            else:
                s.sendall(data)
    """
)

THREAD_SERVER = textwrap.dedent(
    """
    import json, socket, threading
    lst = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": lst.getsockname()[1]}), flush=True)
    def serve(c):
        while data := c.recv(100):
            c.sendall(data)
        c.close()
    while True:
        c, _ = lst.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    """
)

BUSY_SERVER = textwrap.dedent(
    """
    import json, socket
    lst = socket.create_server(("127.0.0.1", 0)); lst.setblocking(False)
    print(json.dumps({"port": lst.getsockname()[1]}), flush=True)
    while True:
        try:
            lst.accept()[0].close()
        except BlockingIOError:
            pass
    """
)


class Target:
    """A child python running `script`; `info` is the JSON line it printed when ready."""

    def __init__(self, script: str, *args: str, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        # The ready line within `timeout`, even if the child never prints (a select() on its
        # stdout, not a blocking readline()).
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line:
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=10)
            self.close()
            why = "exited" if ready else f"printed nothing in {timeout:g} s"
            raise RuntimeError(f"target {self.pid} {why}: {err.strip()[-2000:]}")
        self.info: dict[str, Any] = json.loads(line)

    def wait_sleeping(self, timeout: float = 5.0) -> None:
        """Wait until every thread sleeps (the target reached its blocking call)."""
        def asleep() -> bool:
            tasks = os.listdir(f"/proc/{self.pid}/task")
            states = []
            for tid in tasks:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            return all(st == "S" for st in states)

        if not wait_for(asleep, timeout=timeout, interval=0.01):
            raise RuntimeError(f"target {self.pid} did not go to sleep")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CountingProc(Proc):
    """A Proc that counts the listings of /proc/PID/fd."""

    listed = 0

    def listdir(self, *parts: object, pid: int | None = None) -> list[str]:
        if parts[-1] == "fd":
            self.listed += 1
        return super().listdir(*parts, pid=pid)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll `predicate()` until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def connect(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        socks.append(s)
    return socks


def fake_proc(root: Path, pid: int, *, fds: dict[int, str], fdinfo: dict[int, str] | None = None,
              comm: str = "fake", state: str = "S", threads: dict[int, str] | None = None,
              net: dict[str, str] | None = None) -> Path:
    """Write a canned /proc/PID tree under `root` (fd links are dangling symlinks)."""
    base = root / str(pid)
    (base / "fd").mkdir(parents=True)
    (base / "fdinfo").mkdir()
    (base / "net").mkdir()
    stat = (f"{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 "
            "1000 1000000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")
    (base / "stat").write_text(stat)
    (base / "cmdline").write_bytes(b"fake\0--canned\0")
    (base / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max open files            1024                 4096                 files     \n")
    for fd, link in fds.items():
        os.symlink(link, base / "fd" / str(fd))
        text = (fdinfo or {}).get(fd, "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\n")
        (base / "fdinfo" / str(fd)).write_text(text)
    for tid, syscall in (threads or {pid: "7 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00"}).items():
        tdir = base / "task" / str(tid)
        tdir.mkdir(parents=True)
        (tdir / "stat").write_text(stat.replace(f"{pid} (", f"{tid} (", 1))
        (tdir / "syscall").write_text(syscall + "\n")
        (tdir / "wchan").write_text("do_sys_poll")
    for name, text in (net or {}).items():
        (base / "net" / name).write_text(text)
    (root / "uptime").write_text("5000.00 9000.00\n")
    return base


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
