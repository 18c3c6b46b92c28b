"""Blocking I/O, the seed's first server: accept one client, recv/sendall until it leaves, then
accept the next. Both phases of every read block the only thread (recvfrom sleeps until data
arrives), so while one client is connected every other one waits in the listen backlog.
sendall() loops over partial writes; a client that stops reading blocks it, which is
backpressure of the bluntest kind: the whole server waits."""

from __future__ import annotations

import contextlib
import socket
import threading

from fdscope.servers.core import READ_CHUNK, BaseServer, error_kind, signals_deferred, transform


def serve_client(sock: socket.socket, server: BaseServer,
                 lock: threading.Lock | contextlib.nullcontext[None] | None = None) -> None:
    """Echo one blocking client until EOF or an error, then close it and account for it."""
    stats = server.stats
    guard = lock if lock is not None else contextlib.nullcontext()
    reason = "eof"
    try:
        while True:
            data = sock.recv(READ_CHUNK)
            if not data:
                break
            with guard:
                stats.bytes_in += len(data)
            sock.sendall(transform(data))
            with guard:
                stats.bytes_out += len(data)
    except OSError as err:
        reason = error_kind(err)
    except BaseException:
        reason = "shutdown"
        raise
    finally:
        with signals_deferred(), guard:
            sock.close()
            stats.ended("shutdown" if server.stopping else reason)


class BlockingServer(BaseServer):
    model = "blocking"
    blocking_sockets = True

    def run(self) -> None:
        assert self.listener is not None
        while True:
            sock, peer = self.accept_blocking()
            if self.admit(sock, peer):
                serve_client(sock, self)
