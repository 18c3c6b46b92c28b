"""Thread per connection (the seed's "multi-threading" answer to blocking I/O), or with --pool N
the seed's bounded thread pool: N workers take accepted connections from a queue, so client N+1
waits until a worker is free. Each thread runs the blocking loop of `blocking.serve_client`;
the kernel's scheduler is the event loop, at the price of a stack and a task per client."""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

from fdscope.servers.blocking import serve_client
from fdscope.servers.core import BaseServer, start_worker


class ThreadsServer(BaseServer):
    model = "threads"
    blocking_sockets = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lock = threading.Lock()
        self.live: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.queue: queue.Queue[socket.socket | None] = queue.Queue()

    def listening_extra(self) -> dict[str, Any]:
        return {"pool": self.cfg.pool}

    def _client(self, sock: socket.socket) -> None:
        try:
            serve_client(sock, self, self.lock)
        finally:
            with self.lock:
                self.live.discard(sock)

    def _worker(self) -> None:
        while (sock := self.queue.get()) is not None:
            self._client(sock)

    def run(self) -> None:
        assert self.listener is not None
        if self.cfg.pool:
            for i in range(self.cfg.pool):
                t = start_worker(self._worker, name=f"pool-{i}")
                self.threads.append(t)
        while True:
            sock, peer = self.accept_blocking()
            with self.lock:
                if not self.admit(sock, peer):
                    continue
                self.live.add(sock)
            if self.cfg.pool:
                self.queue.put(sock)
            else:
                t = start_worker(self._client, sock, name="client")
                self.threads = [x for x in self.threads if x.is_alive()]
                self.threads.append(t)

    def close_all(self) -> None:
        self.stopping = True
        with self.lock:
            live = list(self.live)
        for sock in live:
            # shutdown() wakes a thread blocked in recv() on this socket; close() alone would not.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        while True:
            try:
                sock = self.queue.get_nowait()
            except queue.Empty:
                break
            if sock is not None:
                sock.close()
                with self.lock:
                    self.live.discard(sock)
                    self.stats.ended("shutdown")
        for _ in range(self.cfg.pool or 0):
            self.queue.put(None)
        deadline = time.monotonic() + 2.0
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        super().close_all()
