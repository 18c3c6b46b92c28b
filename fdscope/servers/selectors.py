"""selectors.DefaultSelector with callbacks, as the seed's last server: the stdlib picks the best
mechanism of the platform (epoll on Linux) and each registration carries the function to call.
The selector class it picked is printed at startup."""

from __future__ import annotations

import selectors
from collections.abc import Iterable
from typing import Any

from fdscope.servers.core import Conn, EventServer, raise_deferred_stop

_R, _W = selectors.EVENT_READ, selectors.EVENT_WRITE


class SelectorsServer(EventServer):
    model = "selectors"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._sel = selectors.DefaultSelector()

    def listening_extra(self) -> dict[str, Any]:
        return {"selector": type(self._sel).__name__}

    def watch_listener(self) -> None:
        assert self.listener is not None
        self._sel.register(self.listener, _R, self._on_listener)

    def _on_listener(self, _: Any, mask: int) -> None:
        self.on_accept()

    def _on_client(self, conn: Conn, mask: int) -> None:
        self.handle(conn, bool(mask & _R), bool(mask & _W), False)

    def watch(self, conn: Conn) -> None:
        conn.mask = _R
        self._sel.register(conn.sock, _R, self._on_client)

    def update(self, conn: Conn) -> None:
        mask = (_R if conn.wants_read else 0) | (_W if conn.out else 0)
        if mask != conn.mask:
            if mask == 0:
                # selectors refuses an empty mask; an fd nobody waits on leaves the set.
                self._sel.unregister(conn.sock)
            elif conn.mask == 0:
                self._sel.register(conn.sock, mask, self._on_client)
            else:
                self._sel.modify(conn.sock, mask, self._on_client)
            conn.mask = mask

    def unwatch(self, conn: Conn) -> None:
        if conn.mask:
            self._sel.unregister(conn.sock)

    def run(self) -> None:
        self.watch_listener()
        conns, listener = self.conns, self.listener
        while True:
            raise_deferred_stop()
            for key, mask in self._sel.select():
                if key.fileobj is listener:
                    key.data(listener, mask)
                elif (conn := conns.get(key.fd)) is not None:
                    key.data(conn, mask)

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        raise NotImplementedError("selectors dispatches callbacks in run()")

    def close_all(self) -> None:
        super().close_all()
        self._sel.close()
