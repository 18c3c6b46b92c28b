"""EPOLLEXCLUSIVE: how many of several waiters on one listening socket wake per connection.

Facts:
- epoll_ctl(2) EPOLLEXCLUSIVE (since Linux 4.5): "When a wakeup event occurs and multiple epoll
  file descriptors are attached to the same target file using EPOLLEXCLUSIVE, one or more of
  the epoll file descriptors will receive an event with epoll_wait(2). The default in this
  scenario (when EPOLLEXCLUSIVE is not set) is for all epoll file descriptors to receive an
  event."
- "One or more", not "exactly one": fs/eventpoll.c ep_poll_callback stops the wake-up walk at
  the first exclusive entry whose epoll instance has a sleeper, but entries without one do not
  stop it. The man page promises no more, so this probe accepts 1..N.
- epoll_ctl(2) ERRORS: EINVAL when EPOLL_CTL_MOD is applied to an entry added with
  EPOLLEXCLUSIVE (or asks for it).

Consequence for an operator: N worker processes or threads, each with its own epoll set on a
shared listening socket, all wake for every connection without EPOLLEXCLUSIVE (the thundering
herd: N-1 of them find accept() returning EAGAIN). With it, usually one wakes.

Expected observation: see `expectations`. The waiters are threads, each blocked in epoll_wait on
its own epoll fd; the probe checks /proc/self/task/TID that all are asleep before connecting.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    Skip,
    judge,
    kernel_release,
    kernel_version,
    skipped,
)

NAME = "exclusive"
WAITERS = 4
# Time for every woken waiter to leave epoll_wait after the connection is queued; the wake-ups
# themselves run inside the connection's softirq (sock_def_readable), so 50 ms is ample.
SETTLE_MS = 50
EXCL = "epoll_ctl(2) EPOLLEXCLUSIVE"


def _asleep(tid: int) -> bool:
    """True once thread `tid` sleeps in the kernel (state S, in an epoll wait if wchan says)."""
    from fdscope.errors import FdscopeError
    from fdscope.proc import Proc

    proc = Proc()
    pid = os.getpid()
    try:
        stat = proc.read_text(pid, "task", tid, "stat", pid=pid)
        wchan = proc.read_text(pid, "task", tid, "wchan", pid=pid).strip()
    except FdscopeError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    # wchan reads "0" when kernel symbols are hidden; then the state alone has to do.
    return state == "S" and (wchan in ("", "0") or "epoll" in wchan or wchan == "ep_poll")


def count_wakeups(exclusive: bool, waiters: int = WAITERS) -> tuple[int, dict]:
    """Waiters blocked in epoll_wait on one listener; one connection; how many woke for it."""
    flag = select.EPOLLEXCLUSIVE if exclusive else 0
    results: list[list[int] | None] = [None] * waiters
    tids: list[int | None] = [None] * waiters
    with ExitStack() as stack:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stack.callback(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.setblocking(False)
        lfd = lsock.fileno()
        stop_r, stop_w = os.pipe2(os.O_CLOEXEC)
        stack.callback(os.close, stop_r)
        stack.callback(os.close, stop_w)
        eps = []
        for _ in range(waiters):
            ep = select.epoll()
            stack.callback(ep.close)
            ep.register(lsock.fileno(), select.EPOLLIN | flag)
            ep.register(stop_r, select.EPOLLIN)
            eps.append(ep)

        def waiter(i: int) -> None:
            tids[i] = threading.get_native_id()
            results[i] = [fd for fd, _ in eps[i].poll(2.0, 8)]

        threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(waiters)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if all(tid is not None and _asleep(tid) for tid in tids):
                break
            time.sleep(0.001)
        else:
            raise Skip("the waiter threads did not all block in epoll_wait within 1 s")
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stack.callback(client.close)
        client.connect(lsock.getsockname())
        time.sleep(SETTLE_MS / 1000)
        woke_at_settle = sum(1 for r in results if r is not None)
        os.write(stop_w, b"x")
        for t in threads:
            t.join(3.0)
    woken = sum(1 for r in results if r and lfd in r)
    return woken, {"returned_before_stop": woke_at_settle}


def _mod_exclusive() -> str:
    """EPOLL_CTL_MOD on an entry added with EPOLLEXCLUSIVE: 'ok' or the errno name."""
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        ep.register(a.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        try:
            ep.modify(a.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        except OSError as err:
            return errno.errorcode.get(err.errno or 0, str(err.errno))
        return "ok"
    finally:
        ep.close()
        a.close()
        b.close()


def observe(kernel: str) -> Observation:
    if kernel_version(kernel) < (4, 5):
        raise Skip(f"EPOLLEXCLUSIVE needs Linux 4.5 or later (this is {kernel})")
    if not hasattr(select, "EPOLLEXCLUSIVE"):
        raise Skip("this Python's select module has no EPOLLEXCLUSIVE")
    obs = Observation(ctx={"waiters": WAITERS})
    plain, extra_plain = count_wakeups(False)
    excl, extra_excl = count_wakeups(True)
    obs.record("plain", plain)
    obs.record("exclusive", excl)
    obs.record("mod", _mod_exclusive())
    obs.measured.update(woken_without=plain, woken_with=excl, waiters=WAITERS,
                        settle_ms=SETTLE_MS)
    return obs


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    n = ctx["waiters"]
    return [
        Expect("plain", f"{n} waiters (own epoll fd each) on one listener, 1 connection: woken", n,
               EXCL + ": without it all epoll fds receive an event"),
        Expect("exclusive", "same with EPOLLEXCLUSIVE: waiters woken", [1, n],
               EXCL + ": one or more of the epoll fds receive an event", "range"),
        Expect("mod", "EPOLL_CTL_MOD on an EPOLLEXCLUSIVE entry", "EINVAL",
               "epoll_ctl(2) ERRORS: EINVAL for EPOLL_CTL_MOD with EPOLLEXCLUSIVE"),
    ]


def note_for(obs: Observation) -> str:
    m = obs.measured
    return (f"Without EPOLLEXCLUSIVE {m['woken_without']} of {m['waiters']} waiters woke for one "
            f"connection (thundering herd); with it {m['woken_with']}. The man page promises "
            "'one or more', so code must still tolerate accept() failing with EAGAIN.")


def run(kernel: str | None = None) -> ProbeResult:
    kernel = kernel or kernel_release()
    try:
        obs = observe(kernel)
    except Skip as why:
        return skipped(NAME, str(why), transport="tcp-listen")
    return judge(NAME, expectations(obs.ctx, kernel), obs, transport="tcp-listen",
                 note=note_for(obs))
