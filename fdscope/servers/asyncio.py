"""asyncio, the modern stdlib peer: a Protocol on the default event loop (an epoll selector on
Linux). The transport buffers partial writes; backpressure is its write-buffer high-water mark:
pause_writing() stops reading this client, resume_writing() resumes it."""

from __future__ import annotations

import asyncio
import errno
import selectors
import signal
from collections.abc import Callable
from typing import Any, cast

from fdscope.servers.core import (
    STOP_SIGNALS,
    BaseServer,
    Shutdown,
    Stats,
    begin_shutdown,
    install_stop_handlers,
    raise_shutdown,
    restore_handlers,
    signals_deferred,
    transform,
    warn,
)


class _Echo(asyncio.Protocol):
    __slots__ = ("server", "transport")

    def __init__(self, server: AsyncioServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A read-write transport; not isinstance-checked: uvloop's transports implement the
        # interface without subclassing asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        if not self.server.admit_async(sock, peer):
            transport.abort()
            return
        self.transport = transport
        transport.set_write_buffer_limits(high=self.server.cfg.out_cap)
        self.server.transports.add(transport)

    def data_received(self, data: bytes) -> None:
        stats = self.server.stats
        stats.bytes_in += len(data)
        assert self.transport is not None
        before = self.transport.get_write_buffer_size()
        self.transport.write(transform(data))
        pending = self.transport.get_write_buffer_size()
        if not before and pending:
            # The transport tried send() at once and the kernel took only part of it.
            stats.partial_writes += 1
        if pending > stats.peak_pending:
            stats.peak_pending = pending
        stats.bytes_out += len(data)

    def pause_writing(self) -> None:
        self.server.stats.backpressure_pauses += 1
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.server.transports.discard(self.transport)
        reason = "eof" if exc is None else _exc_kind(exc)
        if self.server.stopping:
            reason = "shutdown"
        self.server.stats.ended(reason)


def _exc_kind(exc: BaseException) -> str:
    from fdscope.servers.core import error_kind

    return error_kind(exc) if isinstance(exc, OSError) else type(exc).__name__


class AsyncioServer(BaseServer):
    model = "asyncio"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.transports: set[asyncio.Transport] = set()
        self.stopping = False

    def admit_async(self, sock: Any, peer: Any) -> bool:
        # admit() closes refused sockets itself; here the transport owns it, so only account.
        return self.admit(_Borrowed(sock), peer)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the protocol runs on (the stdlib's selector loop here)."""
        return asyncio.SelectorEventLoop(selectors.DefaultSelector())

    def serve_forever(self, announce: Callable[[], None] = lambda: None,
                      stopped: Callable[[Stats], None] = lambda stats: None) -> Stats:
        loop = self.new_loop()
        loop.set_exception_handler(self._loop_error)
        previous = install_stop_handlers()
        try:
            try:
                try:
                    announce()
                    loop.run_until_complete(self._main(loop))
                finally:
                    begin_shutdown()  # a further stop signal is recorded, not raised
            except Shutdown:
                pass
            finally:
                with signals_deferred():
                    loop.close()  # removes any asyncio signal handler left (SIG_DFL) ...
                    for s in STOP_SIGNALS:  # ... so ours go back before a signal can land
                        signal.signal(s, raise_shutdown)
                super().close_all()
            stopped(self.stats)
        finally:
            restore_handlers(previous)
        return self.stats

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's accept loop, out of fds, reports "socket.accept() out of system resource"
        with a traceback and retries a second later, while the client waits in the backlog.
        Shed the waiting clients as the other models do (BaseServer._shed_one: one line each)
        and let asyncio retry; anything else asyncio reports becomes one line too."""
        exc = context.get("exception")
        if self.stopping and isinstance(exc, ValueError) and self.listener is not None and \
                self.listener.fileno() == -1:
            # asyncio/selector_events.py _accept_connection retries accept() a second after
            # EMFILE (call_later(ACCEPT_RETRY_DELAY, _start_serving)) without checking that the
            # server closed meanwhile: the retry adds fd -1 ("Invalid file descriptor: -1").
            return
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            while self._shed_one(exc):
                pass
            return
        what = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        warn(f"{self.model}: {context.get('message', 'event loop error')}{what}")

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.listener is not None
        stop = loop.create_future()
        for s in STOP_SIGNALS:
            loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
        server = await loop.create_server(lambda: _Echo(self), sock=self.listener)
        try:
            await stop
        finally:
            begin_shutdown()
            self.stopping = True
            server.close()
            for t in list(self.transports):
                t.abort()
            await asyncio.sleep(0)
            with signals_deferred():
                for s in STOP_SIGNALS:
                    # remove_signal_handler() puts back SIG_DFL: ours follow at once, while
                    # the signals are held.
                    loop.remove_signal_handler(s)
                    signal.signal(s, raise_shutdown)


class _Borrowed:
    """A socket stand-in whose close() is left to the asyncio transport."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def close(self) -> None:
        pass
