"""A forked helper for `inspect`: independent /proc reads and parses on a second CPU.

At 16,000 fds the scan is mostly kernel time (readlink per fd, generating /proc/PID/net tables)
plus per-row parsing. A child forked early, before the big allocations (so copy-on-write costs
little), reads every /proc/PID/net table and the last third of the links while the parent reads
the other two thirds, then parses the tables for the socket inodes the parent sends while the
parent reads the epoll fdinfo (fdscope.inspect._helper_work). Results come back as compact
tuples with `marshal`, one length-prefixed frame per step, so the parent can use the links
before the tables are parsed. It serves the pure-Python path only: there threads lose, each
os.readlink releasing and retaking the GIL; with the C accelerator, whose loops release the GIL
once per batch, fdscope.inspect uses threads instead. The helper only reads /proc through Proc,
like the parent; any failure in the child makes the parent do the work itself.
"""

from __future__ import annotations

import marshal
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

_LEN = struct.Struct("=Q")


class Helper:
    """Run `work(*args, recv)` in a forked child: a generator of marshal-able frames for the
    parent (`next`); `recv()` in the child returns what the parent passed to `send`."""

    def __init__(self, work: Callable[..., Iterator[Any]], *args: Any) -> None:
        self.failed = False
        read_end, write_end = os.pipe()
        down_read, down_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # child: never returns into the caller's code
            status = 0
            try:
                os.close(read_end)
                os.close(down_write)
                for frame in work(*args, lambda: _read_frame(down_read)):
                    _write_frame(write_end, frame)
            except BaseException:  # noqa: BLE001 - the parent redoes the work and reports
                status = 1
            finally:
                os._exit(status)  # no atexit handlers, no flush of the parent's stdio buffers
        os.close(write_end)
        os.close(down_read)
        self.fd = read_end
        self.down: int | None = down_write

    def send(self, obj: Any) -> None:
        """Pass `obj` to the child's next recv() (a failed child is ignored: next() says so)."""
        if self.down is None:
            return
        try:
            _write_frame(self.down, obj)
        except OSError:
            pass

    def next(self) -> Any | None:
        """The child's next frame, or None when it failed (the caller falls back)."""
        if self.failed:
            return None
        frame = _read_frame(self.fd)
        if frame is None:
            self.close()
        return frame

    def close(self) -> None:
        if self.pid:
            self.failed = True
            os.close(self.fd)
            if self.down is not None:
                os.close(self.down)
                self.down = None
            os.waitpid(self.pid, 0)
            self.pid = 0


def _write_frame(fd: int, frame: Any) -> None:
    data = marshal.dumps(frame)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int) -> Any | None:
    head = _read_exact(fd, _LEN.size)
    body = _read_exact(fd, _LEN.unpack(head)[0]) if head is not None else None
    return marshal.loads(body) if body is not None else None


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
