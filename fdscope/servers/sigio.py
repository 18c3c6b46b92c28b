"""Signal-driven I/O, the seed's fourth model: each socket gets O_ASYNC and F_SETOWN(our pid), so
the kernel sends SIGIO when it becomes readable or writable or a connection arrives
(fcntl(2) F_SETOWN, socket(7) FIOASYNC).

The lesson of this model: SIGIO is a standard signal, and a standard signal is not queued
(signal(7)): ten sockets becoming ready while one SIGIO is pending still yield one SIGIO, and
the signal does not say which fd. So after every signal the server must try every socket, and
read, write and accept until EAGAIN, exactly like edge-triggered epoll. (Linux's F_SETSIG with a
real-time signal queues one siginfo per event carrying si_fd, but the queue can overflow, after
which the kernel falls back to plain SIGIO and the same full scan.) Cost: O(clients) system
calls per wake-up.

SIGIO is blocked and collected with sigwaitinfo(2) instead of a handler, so no event can slip in
between "scan found nothing" and "wait": a SIGIO raised meanwhile stays pending and ends the
next wait at once."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterable

from fdscope.servers.core import Conn, EventServer


def _make_async(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    # O_ASYNC must be set with F_SETFL; open(2) and accept4() ignore it (open(2) BUGS).
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)


class SigioServer(EventServer):
    model = "sigio"
    drain = True

    def watch_listener(self) -> None:
        assert self.listener is not None
        # Block first: SIGIO's default action terminates the process (signal(7)).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
        _make_async(self.listener.fileno())
        # Clients that connected before O_ASYNC was set raised no SIGIO: scan once first.
        self.signals = -1

    def watch(self, conn: Conn) -> None:
        _make_async(conn.fd)

    def listening_extra(self) -> dict[str, object]:
        return {"signal": "SIGIO"}

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        if self.signals >= 0:
            signal.sigwaitinfo({signal.SIGIO})
        self.signals += 1
        yield None, True, False
        for conn in list(self.conns.values()):
            if conn.fd in self.conns:
                yield conn, conn.wants_read, bool(conn.out)
