"""poll(): no FD_SETSIZE ceiling, the interest set persists in user space, but every call
still hands the whole pollfd array to the kernel, which scans it (poll(2))."""

from __future__ import annotations

import select
from collections.abc import Iterable

from fdscope.servers.core import Conn, EventServer

_READ = select.POLLIN
_WRITE = select.POLLOUT
# POLLHUP/POLLERR are always reported (poll(2)); treat them as "read to learn what happened".
_READISH = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL


class PollServer(EventServer):
    model = "poll"
    # The backend object and its flags; epoll differs only here (cf. CPython selectors.py).
    _new = staticmethod(select.poll)
    _READ, _WRITE, _READISH = _READ, _WRITE, _READISH

    def watch_listener(self) -> None:
        assert self.listener is not None
        self._poller = self._new()
        self._lfd = self.listener.fileno()
        self._poller.register(self._lfd, self._READ)

    def _wanted(self, conn: Conn) -> int:
        return (self._READ if conn.wants_read else 0) | (self._WRITE if conn.out else 0)

    def watch(self, conn: Conn) -> None:
        conn.mask = self._READ
        self._poller.register(conn.fd, conn.mask)

    def update(self, conn: Conn) -> None:
        mask = self._wanted(conn)
        if mask != conn.mask:
            conn.mask = mask
            self._poller.modify(conn.fd, mask)

    def unwatch(self, conn: Conn) -> None:
        self._poller.unregister(conn.fd)

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        conns, lfd, readish, write = self.conns, self._lfd, self._READISH, self._WRITE
        for fd, ev in self._poller.poll():
            if fd == lfd:
                yield None, True, False
            else:
                conn = conns.get(fd)
                if conn is not None:
                    yield conn, bool(ev & readish), bool(ev & write)
