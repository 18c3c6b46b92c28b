"""Non-blocking polling, the seed's second server: every socket is O_NONBLOCK and the loop asks
each one in turn, forever, whether it has data (recv -> EAGAIN). No system call ever waits, so
the process burns a whole CPU even with nothing to do; --idle-sleep trades that for latency."""

from __future__ import annotations

import time
from collections.abc import Iterable

from fdscope.servers.core import Conn, EventServer


class NonblockingServer(EventServer):
    model = "nonblocking"

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        stats = self.stats
        before = stats.bytes_in + stats.bytes_out + stats.clients
        yield None, True, False
        for conn in list(self.conns.values()):
            if conn.fd in self.conns:
                yield conn, conn.wants_read, bool(conn.out)
        if self.cfg.idle_sleep and stats.bytes_in + stats.bytes_out + stats.clients == before:
            time.sleep(self.cfg.idle_sleep)
