"""The shared core of the reference servers.

One protocol (`transform`), one per-connection buffer with backpressure (`Conn`), one account
of what happened (`Stats`), one listening socket, one shutdown path and one event-loop template
(`EventServer`). A model module says only how it waits for readiness (select, poll, epoll, a
signal, or not at all) and whether readiness is edge-like (`drain`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

READ_CHUNK = 65536
# Pending output per client above which the server stops reading that client (backpressure).
OUT_CAP = 256 * 1024
# glibc's fd_set holds fds 0..1023; Python's select.select() raises ValueError beyond (select(2)).
FD_SETSIZE = 1024
ACCEPT_BATCH = 64
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A Python signal handler runs between bytecodes only. A stop signal that lands in the C code
# just before accept()/select()/epoll_wait() enters the kernel (after the interpreter's last
# check) has been taken by the kernel already, so the call blocks, and the handler waits for the
# next client event, maybe forever (seen: 1 in ~4 CI runs, when a test stopped a server right
# after its last client left). A SIGALRM every STOP_CHECK_S seconds interrupts the blocking call
# (EINTR); before retrying it Python runs the pending handlers (PEP 475), so a stop is acted on
# within a second. The wait calls keep their arguments (inspect still shows timeout -1).
STOP_CHECK_S = 1.0
TICK_SIGNAL = signal.SIGALRM
HELD_SIGNALS = (*STOP_SIGNALS, TICK_SIGNAL)  # blocked in workers and during bookkeeping


def transform(data: bytes) -> bytes:
    """The echo protocol: the reply is the request upper-cased, ASCII letters only.

    bytes.upper() maps a-z to A-Z and leaves every other byte alone, so a reply has exactly the
    request's length and can be checked byte for byte (fdscope.load uses this same function)."""
    return data.upper()


class Shutdown(Exception):
    """Raised from the SIGINT/SIGTERM handler; unwinds whatever the model was blocked in."""


@dataclass
class ServeConfig:
    """How `fdscope serve` runs a reference server: model, address, limits."""

    model: str
    host: str = "127.0.0.1"
    port: int = 0
    json: bool = False
    max_clients: int | None = None
    pool: int | None = None
    idle_sleep: float = 0.0
    out_cap: int = OUT_CAP


@dataclass
class Stats:
    """What the server did; printed at shutdown (field names are the `stopped` event's)."""

    clients: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    active: int = 0
    peak_clients: int = 0
    peak_pending: int = 0
    partial_writes: int = 0
    backpressure_pauses: int = 0

    def opened(self) -> None:
        self.clients += 1
        self.active += 1
        if self.active > self.peak_clients:
            self.peak_clients = self.active

    def ended(self, reason: str) -> None:
        self.active -= 1
        self.closed[reason] = self.closed.get(reason, 0) + 1

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "rejected": sum(self.rejected.values()),
            "rejected_by": dict(self.rejected),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "peak_clients": self.peak_clients,
            "peak_pending": self.peak_pending,
            "partial_writes": self.partial_writes,
            "backpressure_pauses": self.backpressure_pauses,
            "closed": dict(self.closed),
        }


def error_kind(err: OSError) -> str:
    """ECONNRESET, EPIPE, ... : the errno's name, the way operators search for it."""
    if err.errno is not None:
        return errno.errorcode.get(err.errno, f"errno {err.errno}")
    return type(err).__name__


class Conn:
    """One client: its socket, its pending output and the backpressure decision.

    Methods return False when the connection is finished; `reason` then says why
    ("eof" or an errno name). Sockets are non-blocking."""

    __slots__ = ("sock", "fd", "peer", "out", "eof", "paused", "reason", "mask", "stats", "cap")

    def __init__(self, sock: socket.socket, peer: Any, stats: Stats, cap: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.out = bytearray()
        self.eof = False
        self.paused = False
        self.reason = ""
        self.mask = 0
        self.stats = stats
        self.cap = cap

    @property
    def wants_read(self) -> bool:
        return not self.eof and len(self.out) < self.cap

    @property
    def wants_write(self) -> bool:
        return bool(self.out)

    def on_readable(self, drain: bool) -> bool:
        """Read once (level-triggered) or until EAGAIN (`drain`, edge-like readiness), queueing
        the replies; stop early when pending output reaches the cap."""
        sock, stats = self.sock, self.stats
        if len(self.out) >= self.cap:
            return self._pause()
        while not self.eof:
            try:
                data = sock.recv(READ_CHUNK)
            except BlockingIOError:
                return True
            except OSError as err:
                self.reason = error_kind(err)
                return False
            if not data:
                self.eof = True
                if not self.out:
                    self.reason = "eof"
                    return False
                return True
            stats.bytes_in += len(data)
            reply = transform(data)
            if self.out:
                self.out += reply
            elif not self._send_direct(reply):
                return False
            if len(self.out) > stats.peak_pending:
                stats.peak_pending = len(self.out)
            if len(self.out) >= self.cap:
                return self._pause()
            if not drain:
                return True
        return True

    def _pause(self) -> bool:
        if not self.paused:
            self.paused = True
            self.stats.backpressure_pauses += 1
        return True

    def _send_direct(self, reply: bytes) -> bool:
        try:
            n = self.sock.send(reply)
        except BlockingIOError:
            n = 0
        except OSError as err:
            self.reason = error_kind(err)
            return False
        self.stats.bytes_out += n
        if n < len(reply):
            self.stats.partial_writes += 1
            self.out += memoryview(reply)[n:]
        return True

    def flush(self) -> bool:
        """Send pending output until it is gone or the socket is full."""
        out = self.out
        while out:
            try:
                n = self.sock.send(out)
            except BlockingIOError:
                break
            except OSError as err:
                self.reason = error_kind(err)
                return False
            self.stats.bytes_out += n
            del out[:n]
            if out:
                # A short write on a stream socket means its send buffer is full (epoll(7)).
                self.stats.partial_writes += 1
                break
        if self.eof and not out:
            self.reason = "eof"
            return False
        return True

    def resume(self, drain: bool) -> bool:
        """Drop the backpressure pause once output drained below the cap; with edge-like
        readiness, read now: the data that arrived while paused will not be announced again."""
        if self.paused and self.wants_read:
            self.paused = False
            if drain:
                return self.on_readable(True)
        return True


class BaseServer:
    """A listening socket, admission rules, totals and the shutdown path."""

    model: ClassVar[str] = ""
    # True when the listening socket and clients stay blocking (blocking, threads).
    blocking_sockets: ClassVar[bool] = False
    # Highest fd the model can watch, plus one; select's FD_SETSIZE.
    fd_limit: ClassVar[int | None] = None

    def __init__(self, cfg: ServeConfig, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.emit = emit
        self.stats = Stats()
        self.listener: socket.socket | None = None
        self._spare_fd: int | None = None
        self.stopping = False

    # -- lifecycle ---------------------------------------------------------------------------
    def bind(self) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.cfg.host, self.cfg.port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(self.blocking_sockets)
        self.listener = sock
        self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        host, port = sock.getsockname()[:2]
        return host, port

    def listening_extra(self) -> dict[str, Any]:
        """Model facts added to the `listening` event (e.g. which selector was picked)."""
        return {}

    def serve_forever(self, announce: Callable[[], None] = lambda: None,
                      stopped: Callable[[Stats], None] = lambda stats: None) -> Stats:
        """Install the stop handlers, `announce` (the listening event: a client may act on it at
        once, so handlers come first), run until SIGINT/SIGTERM, close every connection, hand
        the totals to `stopped` (the stopped event) and return them. The handlers stay until
        then: a second stop signal during the shutdown is recorded, not fatal."""
        previous = install_stop_handlers()
        previous[TICK_SIGNAL] = signal.signal(TICK_SIGNAL, _tick)
        signal.setitimer(signal.ITIMER_REAL, STOP_CHECK_S, STOP_CHECK_S)
        try:
            try:
                try:
                    announce()
                    self.run()
                finally:
                    begin_shutdown()  # first: from here on a stop signal raises nothing
            except Shutdown:
                pass  # also one that landed before begin_shutdown() ran
            finally:
                self.stopping = True
                signal.setitimer(signal.ITIMER_REAL, 0)
                self.close_all()
            stopped(self.stats)
        finally:
            restore_handlers(previous)
        return self.stats

    def run(self) -> None:
        raise NotImplementedError

    def close_all(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None

    # -- admission ---------------------------------------------------------------------------
    def admit(self, sock: socket.socket, peer: Any) -> bool:
        """Apply --max-clients and the model's fd limit; a refused client is closed at once."""
        reason = None
        if self.fd_limit is not None and sock.fileno() >= self.fd_limit:
            reason = "fd_setsize"
            msg = (
                f"{self.model}: closing connection from {_peer(peer)}: fd {sock.fileno()} >= "
                f"FD_SETSIZE {FD_SETSIZE}, select() cannot watch it; still serving the others"
            )
        elif self.cfg.max_clients is not None and self.stats.active >= self.cfg.max_clients:
            reason = "max_clients"
            msg = (
                f"{self.model}: closing connection from {_peer(peer)}: "
                f"--max-clients {self.cfg.max_clients} reached"
            )
        if reason is None:
            # Replies go out in pieces; Nagle would hold a piece back until the ACK of the
            # previous one, which the peer delays (~40 ms): tcp(7) TCP_NODELAY.
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.stats.opened()
            return True
        self.stats.reject(reason)
        _set_linger0(sock)
        sock.close()
        warn(msg)
        return False

    def accept_some(self, drain: bool) -> list[tuple[socket.socket, Any]]:
        """Accept up to ACCEPT_BATCH clients (all of them with `drain`) without blocking."""
        assert self.listener is not None
        accepted: list[tuple[socket.socket, Any]] = []
        while drain or len(accepted) < ACCEPT_BATCH:
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    if self._shed_one(err):
                        continue
                    break
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            if self.admit(sock, peer):
                sock.setblocking(False)
                accepted.append((sock, peer))
        return accepted

    def accept_blocking(self) -> tuple[socket.socket, Any]:
        """accept() for the blocking models, with the same EMFILE shedding. EMFILE comes back at
        once, queue or no queue, so with nothing to shed wait a little instead of spinning."""
        assert self.listener is not None
        while True:
            try:
                return self.listener.accept()
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    self.listener.setblocking(False)
                    try:
                        shed = self._shed_one(err)
                    finally:
                        self.listener.setblocking(True)
                    if not shed:
                        time.sleep(0.1)
                    continue
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise

    def _shed_one(self, err: OSError) -> bool:
        """Out of fds: a pending connection keeps the listener readable, so a level-triggered
        loop would spin. Free the spare fd, accept and reset the client, take the spare again
        (the libev/libevent "spare fd" idiom). False when nothing was pending: accept(2)
        allocates the new fd before it looks at the queue, so it says EMFILE even when the
        queue is empty (net/socket.c __sys_accept4_file)."""
        assert self.listener is not None
        if self._spare_fd is None:
            return False
        os.close(self._spare_fd)
        self._spare_fd = None
        try:
            sock, peer = self.listener.accept()
        except OSError:
            sock = None
        if sock is not None:
            _set_linger0(sock)
            sock.close()
        try:
            self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        except OSError:
            self._spare_fd = None
        if sock is None:
            return False
        kind = error_kind(err)
        self.stats.reject(kind)
        warn(f"{self.model}: accept: {kind} (out of file descriptors); closed the connection "
             f"from {_peer(peer)} at once to stay responsive")
        return True


class EventServer(BaseServer):
    """The single-threaded readiness loop shared by every non-blocking model.

    A model implements `watch`, `update`, `unwatch` and `wait`; `wait` yields
    (conn-or-None-for-the-listener, readable, writable). With `drain` (edge-like readiness:
    epoll-et, sigio) every read and accept goes on until EAGAIN."""

    drain: ClassVar[bool] = False

    def __init__(self, cfg: ServeConfig, emit: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(cfg, emit)
        self.conns: dict[int, Conn] = {}

    def watch_listener(self) -> None:
        """Register the listening socket with the model's mechanism."""

    def watch(self, conn: Conn) -> None:
        """Register a new client."""

    def update(self, conn: Conn) -> None:
        """The client's wants (read, write) may have changed."""

    def unwatch(self, conn: Conn) -> None:
        """Forget a client before its socket is closed."""

    def wait(self) -> Iterable[tuple[Conn | None, bool, bool]]:
        raise NotImplementedError

    def run(self) -> None:
        self.watch_listener()
        drain = self.drain
        handle = self.handle
        while True:
            raise_deferred_stop()
            for conn, readable, writable in self.wait():
                if conn is None:
                    self.on_accept()
                else:
                    handle(conn, readable, writable, drain)

    def on_accept(self) -> None:
        for sock, peer in self.accept_some(self.drain):
            conn = Conn(sock, peer, self.stats, self.cfg.out_cap)
            self.conns[conn.fd] = conn
            self.watch(conn)

    def handle(self, conn: Conn, readable: bool, writable: bool, drain: bool) -> None:
        ok = True
        if readable:
            ok = conn.on_readable(drain)
        if ok and writable and conn.out:
            ok = conn.flush()
        if ok and conn.paused:
            ok = conn.resume(drain)
        if ok:
            self.update(conn)
        else:
            self.drop(conn, conn.reason)

    def drop(self, conn: Conn, reason: str) -> None:
        with signals_deferred():
            self.unwatch(conn)
            del self.conns[conn.fd]
            conn.sock.close()
            self.stats.ended(reason)

    def close_all(self) -> None:
        for conn in list(self.conns.values()):
            try:
                self.drop(conn, "shutdown")
            except (OSError, KeyError):
                # Half-dropped when the Shutdown landed (a signal caught by Python just before
                # it was masked still runs its handler): close it and carry on.
                conn.sock.close()
        super().close_all()


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM (and the SIGALRM tick) while bookkeeping runs, so the Shutdown their
    handler raises cannot land between closing a client and counting it (pthread_sigmask(3);
    main thread only, the only one where Python runs signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    except Shutdown:
        # A stop signal caught just before: its handler ran inside the call, after the mask
        # changed. Undo the block so later signals are not held forever, and stop.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)
        raise
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_worker(target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
    """Start a daemon thread that never receives SIGINT/SIGTERM (nor the SIGALRM tick).

    The kernel delivers a process-directed signal to any thread that does not block it
    (signal(7)). Caught by a worker in recv(), Python only flags it, while the main thread sits
    on in accept() and the stop is lost until the next connection. A thread inherits the
    creator's mask (pthread_create(3)), so start it with those signals blocked."""
    t = threading.Thread(target=target, args=args, name=name, daemon=True)
    with signals_deferred():
        t.start()
    return t


# The stop signals taken, kept beside the Shutdown their handler raises: Python runs a pending
# handler at any bytecode of the main thread, also inside a finalizer (a generator closed by
# the garbage collector, a __del__), and an exception raised there is only printed ("Exception
# ignored in ...") and lost. The next SIGALRM tick raises it again (_tick), at most a second
# later.
_stop_requested: list[str] = []
# Set once the shutdown has begun: closing the clients and printing the totals must not be cut
# short, so a further stop signal (a second Ctrl-C, a supervisor's repeated SIGTERM) is only
# recorded in _stop_requested. The default action, restored too early, would kill the process
# before it prints its totals.
_shutdown_begun = threading.Event()


def install_stop_handlers() -> dict[int, Any]:
    """Our SIGINT/SIGTERM handler (raise_shutdown), fresh state; returns the previous handlers.
    A Shutdown lost in a finalizer is not reported as an error (sys.unraisablehook): the tick
    raises it again."""
    _stop_requested.clear()
    _shutdown_begun.clear()
    if sys.unraisablehook is not _quiet_lost_shutdown:
        _quiet_lost_shutdown.previous = sys.unraisablehook  # type: ignore[attr-defined]
        sys.unraisablehook = _quiet_lost_shutdown
    return {s: signal.signal(s, raise_shutdown) for s in STOP_SIGNALS}


def _quiet_lost_shutdown(unraisable: Any) -> None:
    """sys.unraisablehook: a Shutdown raised inside a finalizer or weakref callback (the
    "Exception ignored in ..." report) is raised again by the next tick; anything else is
    reported as before."""
    if isinstance(unraisable.exc_value, Shutdown):
        return
    _quiet_lost_shutdown.previous(unraisable)  # type: ignore[attr-defined]


_quiet_lost_shutdown.previous = sys.__unraisablehook__  # type: ignore[attr-defined]


def begin_shutdown() -> None:
    _shutdown_begun.set()


def restore_handlers(previous: dict[int, Any]) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)
    if sys.unraisablehook is _quiet_lost_shutdown:
        sys.unraisablehook = _quiet_lost_shutdown.previous  # type: ignore[attr-defined]


def raise_shutdown(signum: int, frame: Any) -> None:
    _stop_requested.append(signal.Signals(signum).name)
    if _shutdown_begun.is_set():
        return  # recorded; the shutdown under way goes on
    if frame is not None and frame.f_code in _COUNTING:
        # Between a send() and counting its bytes: raising here would lose them from the
        # totals. The loop raises it at its next turn (raise_deferred_stop), the tick within
        # STOP_CHECK_S.
        return
    raise Shutdown(_stop_requested[-1])


def raise_deferred_stop() -> None:
    """Raise the Shutdown of a stop signal that landed while bytes were being counted."""
    if _stop_requested and not _shutdown_begun.is_set():
        raise Shutdown(_stop_requested[-1])


def _tick(signum: int, frame: Any) -> None:
    """SIGALRM every STOP_CHECK_S: being called interrupts the blocking call, so a pending stop
    handler runs; and a stop whose Shutdown was lost or deferred (see _stop_requested) is
    raised now."""
    if frame is not None and frame.f_code in _COUNTING:
        return
    raise_deferred_stop()


# Code that does non-blocking I/O and counts it in Stats: a Shutdown raised between the two
# would leave the totals short, so raise_shutdown() defers it there (the handler runs in the
# innermost Python frame, which it is given). Never blocking code: a deferred stop would wait
# for it. (The blocking model's sendall() is not deferred: a stop must interrupt it when a
# client stops reading, at the price of possibly missing that last write in bytes_out.)
_COUNTING = {f.__code__ for f in (
    Conn.on_readable, Conn._pause, Conn._send_direct, Conn.flush, Conn.resume,
    Stats.opened, Stats.ended, Stats.reject,
)}


def _set_linger0(sock: socket.socket) -> None:
    """Close with RST instead of FIN so a refused client learns at once (socket(7) SO_LINGER)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        from fdscope.parse.net import format_inet

        return format_inet(peer[0], peer[1])  # [::1]:port for IPv6
    return str(peer)


def warn(message: str) -> None:
    """One diagnostic line on stderr, prefixed like every fdscope message."""
    try:
        sys.stderr.write(f"fdscope serve: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
