"""Live targets for the inspect tests: a fixture "zoo" process with known fds, tiny servers in
the three classic I/O models, and a fake /proc tree builder.

Each live target is a `python -c SCRIPT` child that prints one JSON line (its fd numbers or its
port) once ready and then blocks; `Target` kills it on exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

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

    def __init__(self, script: str, *args: str, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line or time.monotonic() > deadline:
            self.close()
            raise RuntimeError(f"target did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
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


def run_as_nobody(argv: list[str], entry: bool = False) -> tuple[int, str]:
    """Run the real fdscope CLI in a forked child that dropped to uid/gid nobody (65534).

    Returns (exit status, stderr). The child inherits this interpreter and its imports, so it
    needs no access to the (root-only) venv on disk. entry=True runs the console entry point
    (fdscope.cli.entry: read-ahead, os._exit) instead of the click group."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.close(r)
            os.dup2(w, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            sys.stdout = open(1, "w", closefd=False)  # pytest swapped the Python-level streams
            sys.stderr = open(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            from fdscope.cli.main import cli

            if entry:
                from fdscope.cli.entry import main

                sys.argv = ["fdscope", *argv]
                main()  # ends in os._exit
            try:
                cli.main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "r") as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


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
