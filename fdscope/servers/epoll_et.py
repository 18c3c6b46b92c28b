"""epoll, edge-triggered: each fd is registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET and
never modified. An edge is reported when readiness changes, not while it lasts, so every read,
write and accept goes on until EAGAIN (epoll(7): "wait for an event only after read(2) or
write(2) return EAGAIN"). The trap this server avoids: a client paused by backpressure still has
unread data, and no new edge will announce it, so the read is resumed by hand once its output
drains (core.Conn.resume)."""

from __future__ import annotations

import select
from collections.abc import Iterable

from fdscope.servers.core import Conn, EventServer

_MASK = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_READISH = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP


class EpollETServer(EventServer):
    model = "epoll-et"
    drain = True

    def watch_listener(self) -> None:
        assert self.listener is not None
        self._ep = select.epoll()
        self._lfd = self.listener.fileno()
        self._ep.register(self._lfd, select.EPOLLIN | select.EPOLLET)

    def watch(self, conn: Conn) -> None:
        # A file already ready at EPOLL_CTL_ADD is queued at once (fs/eventpoll.c ep_insert).
        self._ep.register(conn.fd, _MASK)

    def unwatch(self, conn: Conn) -> None:
        self._ep.unregister(conn.fd)

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        conns, lfd = self.conns, self._lfd
        for fd, ev in self._ep.poll():
            if fd == lfd:
                yield None, True, False
            else:
                conn = conns.get(fd)
                if conn is not None:
                    yield conn, bool(ev & _READISH), bool(ev & select.EPOLLOUT)

    def close_all(self) -> None:
        super().close_all()
        ep = getattr(self, "_ep", None)
        if ep is not None:
            ep.close()
