"""Blocking I/O, the seed's first server: accept one client, recv/sendall until it leaves, then
accept the next. Both phases of every read block the only thread (recvfrom sleeps until data
arrives), so while one client is connected every other one waits in the listen backlog.
sendall() loops over partial writes; a client that stops reading blocks it, which is
backpressure of the bluntest kind: the whole server waits."""

from __future__ import annotations

import socket
import threading

from fdscope.servers.core import READ_CHUNK, BaseServer, Stats, error_kind, transform


def serve_client(sock: socket.socket, server: BaseServer, lock: threading.Lock | None = None) -> None:
    """Echo one blocking client until EOF or an error, then close it and account for it."""
    bytes_in = bytes_out = 0
    reason = "eof"
    try:
        while True:
            data = sock.recv(READ_CHUNK)
            if not data:
                break
            bytes_in += len(data)
            sock.sendall(transform(data))
            bytes_out += len(data)
    except OSError as err:
        reason = error_kind(err)
    except BaseException:
        reason = "shutdown"
        raise
    finally:
        sock.close()
        if server.stopping:
            reason = "shutdown"
        stats = server.stats
        if lock is None:
            _account(stats, bytes_in, bytes_out, reason)
        else:
            with lock:
                _account(stats, bytes_in, bytes_out, reason)


def _account(stats: Stats, bytes_in: int, bytes_out: int, reason: str) -> None:
    stats.bytes_in += bytes_in
    stats.bytes_out += bytes_out
    stats.ended(reason)


class BlockingServer(BaseServer):
    model = "blocking"
    blocking_sockets = True

    def run(self) -> None:
        assert self.listener is not None
        self.current: socket.socket | None = None
        while True:
            sock, peer = self.listener.accept()
            if not self.admit(sock, peer):
                continue
            self.current = sock
            serve_client(sock, self)
            self.current = None
