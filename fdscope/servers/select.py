"""select(): the whole fd set is rebuilt and copied to the kernel on every call, and no fd
numbered FD_SETSIZE (1024) or more can be watched at all (select(2) BUGS), so such a client
is refused at once."""

from __future__ import annotations

import select
from collections.abc import Iterable

from fdscope.servers.core import FD_SETSIZE, Conn, EventServer


class SelectServer(EventServer):
    model = "select"
    fd_limit = FD_SETSIZE

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        assert self.listener is not None
        lfd = self.listener.fileno()
        conns = self.conns
        rlist = [lfd]
        wlist = []
        for fd, conn in conns.items():
            if conn.wants_read:
                rlist.append(fd)
            if conn.out:
                wlist.append(fd)
        r, w, _ = select.select(rlist, wlist, [])
        wset = set(w)
        for fd in r:
            if fd == lfd:
                yield None, True, False
            else:
                conn = conns.get(fd)
                if conn is not None:
                    yield conn, True, fd in wset
                    wset.discard(fd)
        for fd in wset:
            conn = conns.get(fd)
            if conn is not None:
                yield conn, False, True
