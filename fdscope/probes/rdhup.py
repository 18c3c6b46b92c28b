"""EPOLLRDHUP: the peer shut down its write side (half-close), seen without a read.

Facts:
- epoll_ctl(2) EPOLLRDHUP (since Linux 2.6.17): "Stream socket peer closed connection, or shut
  down writing half of connection. (This flag is especially useful for writing simple code to
  detect peer shutdown when using edge-triggered monitoring.)"
- read(2)/recv(2): once the data before the shutdown is consumed, a read returns 0 (end of
  file) — and keeps returning 0, so the socket stays readable (level-triggered: reported on
  every wait).
- shutdown(2) closes one direction only: our side can still send to the peer.
- Both directions shut → EPOLLHUP as well (net/unix/af_unix.c unix_poll, net/ipv4/tcp.c
  tcp_poll: sk_shutdown == SHUTDOWN_MASK).

Consequence for an operator: a loop that treats "readable" as "data" and ignores read() == 0
spins at 100% CPU on a half-closed connection (and CLOSE_WAIT sockets pile up); EPOLLRDHUP
tells it the peer is done without an extra read.

Expected observation: see `expectations`. Sockets only: a pipe has no half-close (closing its
write end gives EPOLLHUP).
"""

from __future__ import annotations

import errno
import os
import select
import socket
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    error_text,
    judge,
    kernel_release,
    open_channel,
    skipped,
    stopped,
    wait_events,
    write_bytes,
)

NAME = "rdhup"
TRANSPORTS = ("socketpair", "tcp")
RDHUP = "epoll_ctl(2) EPOLLRDHUP: peer shut down writing half of connection"
EOF_SRC = "read(2)/recv(2): 0 at end of file after an orderly shutdown"
POLL_SRC = {
    "socketpair": "net/unix/af_unix.c unix_poll",
    "tcp": "net/ipv4/tcp.c tcp_poll",
}


def _read(fd: int) -> int | str:
    try:
        return len(os.read(fd, 4096))
    except BlockingIOError:
        return "EAGAIN"
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, error_text(err))


def observe(transport: str) -> Observation:
    obs = Observation(ctx={"transport": transport})
    rec = obs.record
    with ExitStack() as stack:
        ch = open_channel(transport, stack)
        assert ch.peer_socket is not None and ch.rx_socket is not None
        ep = select.epoll()
        stack.callback(ep.close)
        try:
            ep.register(ch.rx, select.EPOLLIN | select.EPOLLRDHUP)
            rec("idle", wait_events(ep, ch.rx))
            write_bytes(ch.peer_tx, 5)
            ch.peer_socket.shutdown(socket.SHUT_WR)
            rec("shutdown", wait_events(ep, ch.rx))
            rec("read_data", _read(ch.rx))
            rec("read_eof", _read(ch.rx))
            rec("after_eof", wait_events(ep, ch.rx))
            rec("half_open", write_bytes(ch.rx, 3))
            ch.peer_socket.setblocking(True)
            ch.peer_socket.settimeout(1.0)
            rec("peer_reads", len(ch.peer_socket.recv(16)))
            ch.rx_socket.shutdown(socket.SHUT_WR)
            rec("both_shut", wait_events(ep, ch.rx))
        except OSError as err:
            stopped(obs, err)
    return obs


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    poll_src = POLL_SRC.get(ctx["transport"], "socket poll")
    return [
        Expect("idle", "register EPOLLIN|EPOLLRDHUP; wait", [], "epoll(7)"),
        Expect("shutdown", "peer writes 5 bytes, then shutdown(SHUT_WR); wait",
               ["EPOLLIN", "EPOLLRDHUP"], RDHUP),
        Expect("read_data", "read: bytes", 5, "read(2): data sent before the shutdown"),
        Expect("read_eof", "read again: bytes", 0, EOF_SRC),
        Expect("after_eof", "wait after reading EOF", ["EPOLLIN", "EPOLLRDHUP"],
               "epoll(7) level-triggered: EOF stays readable; " + poll_src),
        Expect("half_open", "we write 3 bytes to the peer: bytes sent", 3,
               "shutdown(2): SHUT_WR stops only the peer's sending"),
        Expect("peer_reads", "peer reads: bytes", 3, "shutdown(2)"),
        Expect("both_shut", "we shutdown(SHUT_WR) too; wait", ["EPOLLIN", "EPOLLHUP", "EPOLLRDHUP"],
               poll_src + ": both directions shut gives EPOLLHUP"),
    ]


NOTE = (
    "read() == 0 means the peer is done: close (or finish writing, then close). A loop that "
    "waits again without closing is told EPOLLIN|EPOLLRDHUP forever and spins."
)


def run(transport: str = "socketpair", kernel: str | None = None) -> ProbeResult:
    if transport not in TRANSPORTS:
        return skipped(NAME, f"{transport} has no half-close (closing a pipe's write end gives "
                       "EPOLLHUP, not EPOLLRDHUP)", transport=transport)
    obs = observe(transport)
    return judge(NAME, expectations(obs.ctx, kernel or kernel_release()), obs,
                 transport=transport, note=NOTE)
