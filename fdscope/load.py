"""The verifying load client: N connections from one process on one epoll loop, each sending
messages of random bytes and sizes one at a time and checking every reply byte against
fdscope.servers.core.transform of what it sent.

Random content comes from one pool of random bytes and its transformed twin, both made once:
a message is a random slice of the pool, its expected reply the same slice of the twin, so
checking costs a memoryview comparison and no per-message allocation.
"""

from __future__ import annotations

import errno
import math
import random
import resource
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fdscope.errors import FdscopeError, UsageError
from fdscope.parse.net import format_inet
from fdscope.servers.core import error_kind, transform

RECV_CHUNK = 262144
MAX_FAILURE_DETAILS = 10
_CONNECTING, _ACTIVE = 0, 1


@dataclass
class LoadConfig:
    """What `fdscope load` sends: connections, messages per connection, sizes, time limits."""

    host: str
    port: int
    connections: int = 10
    messages: int | None = 100
    size_min: int = 1
    size_max: int = 4096
    duration: float | None = None
    stall_timeout: float = 10.0
    seed: int | None = None


class _Client:
    __slots__ = ("idx", "sock", "fd", "state", "msg", "expected", "sent", "recvd", "t0",
                 "done", "mask")

    def __init__(self, idx: int, sock: socket.socket) -> None:
        self.idx = idx
        self.sock = sock
        self.fd = sock.fileno()
        self.state = _CONNECTING
        self.msg: memoryview | None = None
        self.expected: memoryview | None = None
        self.sent = 0
        self.recvd = 0
        self.t0 = 0
        self.done = 0
        self.mask = 0


class LoadRun:
    """One load run; `run()` returns the result document (schema fdscope.load/1)."""

    def __init__(self, cfg: LoadConfig, progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> None:
        if cfg.connections < 1:
            raise FdscopeError("--connections must be at least 1")
        if not 1 <= cfg.size_min <= cfg.size_max <= MAX_MESSAGE:
            raise UsageError(f"message sizes must satisfy 1 <= MIN <= MAX <= {MAX_MESSAGE}")
        # A nan deadline or stall timeout compares False with everything: the loop would never
        # end. The CLI's types refuse them; this guards every other caller.
        for name, value in (("duration", cfg.duration), ("stall timeout", cfg.stall_timeout)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"the {name} must be a finite number of seconds > 0, not {value}")
        self.cfg = cfg
        self.progress = progress
        self.stop = stop or threading.Event()
        self.rng = random.Random(cfg.seed)
        pool = self.rng.randbytes(cfg.size_max + 65536)
        self.pool = memoryview(pool)
        self.upper = memoryview(transform(pool))
        self.errors: dict[str, int] = {}
        self.failures: list[dict[str, Any]] = []
        self.integrity_failures = 0
        self.latencies: list[int] = []
        self.messages_sent = 0
        self.bytes_sent = 0
        self.bytes_verified = 0
        self.bytes_lost = 0
        self.bytes_extra = 0
        self.bytes_in_flight = 0
        self.connections_ok = 0
        self.rlimit: dict[str, int] | None = None

    # -- setup -------------------------------------------------------------------------------
    def _raise_nofile(self) -> None:
        need = self.cfg.connections + 64
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            if hard != resource.RLIM_INFINITY and hard < need:
                raise FdscopeError(
                    f"{self.cfg.connections} connections need about {need} fds but the hard "
                    f"RLIMIT_NOFILE is {hard}; raise it (ulimit -Hn) or use fewer connections")
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.rlimit = {"from": soft, "to": need}

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        family, addr = resolve(cfg.host, cfg.port)
        self._raise_nofile()
        ep = select.epoll()
        clients: dict[int, _Client] = {}
        for i in range(cfg.connections):
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as err:
                for c in clients.values():
                    c.sock.close()
                ep.close()
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    raise
                raise FdscopeError(f"cannot create a socket for {format_inet(cfg.host, cfg.port)}: "
                                   f"{err.strerror or err}") from err
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = sock.connect_ex(addr)
            if rc not in (0, errno.EINPROGRESS):
                self._error(errno.errorcode.get(rc, str(rc)))
                sock.close()
                continue
            c = _Client(i, sock)
            clients[c.fd] = c
            c.mask = select.EPOLLOUT
            ep.register(c.fd, c.mask)
        self.start = time.perf_counter()
        self.deadline = self.start + cfg.duration if cfg.duration else None
        last_progress = self.start
        reported = 0
        try:
            while clients:
                events = ep.poll(0.1)
                now = time.perf_counter()
                before = len(self.latencies)
                for fd, ev in events:
                    c = clients.get(fd)
                    if c is None:
                        continue
                    if not self._on_event(ep, c, ev):
                        ep.unregister(fd)
                        c.sock.close()
                        del clients[fd]
                if events:
                    last_progress = now
                if len(self.latencies) != before and self.progress is not None:
                    self.progress(len(self.latencies) - reported)
                    reported = len(self.latencies)
                if now - last_progress > cfg.stall_timeout:
                    for c in clients.values():
                        self._fail_inflight(c, "timeout")
                        c.sock.close()
                    clients.clear()
                elif self.stop.is_set():
                    for fd, c in list(clients.items()):
                        if c.state == _CONNECTING or c.msg is None:
                            ep.unregister(fd)
                            c.sock.close()
                            del clients[fd]
                    self.deadline = now
        finally:
            for c in clients.values():
                if c.msg is not None:
                    self.bytes_in_flight += c.sent - c.recvd
                c.sock.close()
            ep.close()
        self.elapsed = time.perf_counter() - self.start
        return self.result()

    def _on_event(self, ep: select.epoll, c: _Client, ev: int) -> bool:
        if c.state == _CONNECTING:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._error(errno.errorcode.get(err, str(err)))
                return False
            c.state = _ACTIVE
            self.connections_ok += 1
            return self._next_message(ep, c)
        if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            try:
                data = c.sock.recv(RECV_CHUNK)
            except BlockingIOError:
                data = None
            except OSError as err:
                return self._fail_inflight(c, error_kind(err))
            if data is not None:
                if not data:
                    return self._fail_inflight(c, "eof")
                if not self._verify(c, data):
                    return False
                if c.msg is not None and c.recvd == len(c.msg):
                    self.latencies.append(time.perf_counter_ns() - c.t0)
                    c.done += 1
                    c.msg = None
                    return self._next_message(ep, c)
        if ev & select.EPOLLOUT and c.msg is not None and c.sent < len(c.msg):
            return self._send(ep, c)
        return True

    def _more(self, c: _Client) -> bool:
        if self.stop.is_set():
            return False
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return False
        return self.cfg.messages is None or c.done < self.cfg.messages

    def _next_message(self, ep: select.epoll, c: _Client) -> bool:
        if not self._more(c):
            return False
        size = self.rng.randint(self.cfg.size_min, self.cfg.size_max)
        off = self.rng.randrange(0, len(self.pool) - size + 1)
        c.msg = self.pool[off:off + size]
        c.expected = self.upper[off:off + size]
        c.sent = c.recvd = 0
        c.t0 = time.perf_counter_ns()
        self.messages_sent += 1
        return self._send(ep, c)

    def _send(self, ep: select.epoll, c: _Client) -> bool:
        assert c.msg is not None
        try:
            n = c.sock.send(c.msg[c.sent:])
        except BlockingIOError:
            n = 0
        except OSError as err:
            return self._fail_inflight(c, error_kind(err))
        c.sent += n
        self.bytes_sent += n
        mask = select.EPOLLIN | (select.EPOLLOUT if c.sent < len(c.msg) else 0)
        if mask != c.mask:
            c.mask = mask
            ep.modify(c.fd, mask)
        return True

    def _verify(self, c: _Client, data: bytes) -> bool:
        """Check one chunk of a reply as it arrives: the part within the message byte for byte
        (a wrong byte is reported at its offset in the message), then anything beyond the
        message as extra bytes. Verified bytes are counted at once, so bytes_sent = verified +
        lost + in flight holds at every moment a connection can end."""
        if c.msg is None:
            self.bytes_extra += len(data)
            self._integrity(c, "extra bytes", 0, None, None)
            return False
        assert c.expected is not None
        room = len(c.msg) - c.recvd
        within = memoryview(data)[:room]
        want = c.expected[c.recvd:c.recvd + len(within)]
        if want != within:
            at = next(i for i in range(len(within)) if want[i] != within[i])
            c.recvd += at  # the bytes before the wrong one were right
            self.bytes_verified += at
            self._integrity(c, "corrupted byte", c.recvd, want[at], within[at])
            return False
        c.recvd += len(within)
        self.bytes_verified += len(within)
        if len(data) > room:
            # The whole message came back right, and then more: the server replied more bytes
            # than it was sent.
            self.bytes_extra += len(data) - room
            self._integrity(c, "extra bytes", len(c.msg), None, None)
            return False
        return True

    def _integrity(self, c: _Client, kind: str, offset: int, expected: int | None,
                   got: int | None) -> None:
        """A reply that differs from the message: recorded, and the connection ends. Sent bytes
        of the message without a verified reply count as lost."""
        self.integrity_failures += 1
        if len(self.failures) < MAX_FAILURE_DETAILS:
            self.failures.append({
                "connection": c.idx, "message": c.done, "kind": kind, "offset": offset,
                "size": len(c.msg) if c.msg is not None else 0, "expected": expected, "got": got,
            })
        if c.msg is not None:
            self.bytes_lost += c.sent - c.recvd
        c.msg = None

    def _fail_inflight(self, c: _Client, kind: str) -> bool:
        """The connection ended; sent bytes of an unfinished message that never came back
        verified are lost."""
        if c.state == _CONNECTING:
            self._error(kind)
        elif c.msg is not None:
            self._error(kind)
            self.bytes_lost += c.sent - c.recvd
            if len(self.failures) < MAX_FAILURE_DETAILS:
                self.failures.append({
                    "connection": c.idx, "message": c.done, "kind": f"lost ({kind})",
                    "offset": c.recvd, "size": len(c.msg), "expected": None, "got": None,
                })
            c.msg = None
        elif self.cfg.messages is not None and c.done < self.cfg.messages:
            self._error(kind)
        return False

    # -- result ------------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        cfg = self.cfg
        lat = sorted(self.latencies)
        n = len(lat)
        elapsed = max(self.elapsed, 1e-9)

        def pct(p: float) -> float | None:
            if not n:
                return None
            return lat[min(n - 1, max(0, int(round(p / 100 * n + 0.5)) - 1))] / 1e6

        expected = cfg.connections * cfg.messages if cfg.messages is not None else None
        missing = (expected - n) if expected is not None else 0
        problems = []
        if self.integrity_failures:
            problems.append(f"{self.integrity_failures} replies differ from the upper-cased message")
        if self.bytes_extra:
            problems.append(f"{self.bytes_extra} extra bytes (replies longer than the message)")
        if self.bytes_lost:
            problems.append(f"{self.bytes_lost} bytes lost")
        if self.errors:
            problems.append("connection errors: "
                            + ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())))
        if missing > 0 and not problems:
            problems.append(f"{missing} of {expected} messages not completed")
        return {
            "schema": "fdscope.load/1",
            "target": format_inet(cfg.host, cfg.port),
            "connections": cfg.connections,
            "connections_ok": self.connections_ok,
            "messages_per_connection": cfg.messages,
            "duration_limit_s": cfg.duration,
            "size": {"min": cfg.size_min, "max": cfg.size_max},
            "messages_expected": expected,
            "messages_sent": self.messages_sent,
            "messages_ok": n,
            "bytes_sent": self.bytes_sent,
            "bytes_verified": self.bytes_verified,
            "bytes_lost": self.bytes_lost,
            "bytes_in_flight": self.bytes_in_flight,
            "bytes_extra": self.bytes_extra,
            "duration_s": round(self.elapsed, 6),
            "msgs_per_s": round(n / elapsed, 1),
            "mb_per_s": round(self.bytes_verified / elapsed / 1e6, 3),
            "latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99),
                           "max": lat[-1] / 1e6 if n else None},
            "errors": dict(self.errors),
            "integrity_failures": self.integrity_failures,
            "failures": self.failures,
            "rlimit_nofile_raised": self.rlimit,
            "ok": not problems,
            "verdict": "; ".join(problems) if problems else "every reply byte verified",
        }


def run_load(cfg: LoadConfig, progress: Callable[[int], None] | None = None,
             stop: threading.Event | None = None) -> dict[str, Any]:
    """Run the load described by `cfg`; return the fdscope.load/1 document."""
    return LoadRun(cfg, progress, stop).run()


# Largest message: the load keeps two pools of random bytes (the messages and their expected
# replies) a little larger than the largest message.
MAX_MESSAGE = 64 * 1024 * 1024


def parse_size(text: str) -> tuple[int, int]:
    """"4096" -> (4096, 4096); "1-65536" -> (1, 65536); suffixes k/K (1024) and m/M allowed.
    ASCII digits only; sizes from 1 to MAX_MESSAGE (64m)."""

    def one(part: str) -> int:
        part = part.strip().lower()
        mult = 1
        if part.endswith("k"):
            mult, part = 1024, part[:-1]
        elif part.endswith("m"):
            mult, part = 1024 * 1024, part[:-1]
        if not (part.isascii() and part.isdigit()):
            raise ValueError(f"not a size: {text!r}")
        if len(part) > 12:
            raise ValueError(f"sizes must be at most 64m ({MAX_MESSAGE} bytes), not {text!r}")
        return int(part) * mult

    lo, sep, hi = text.partition("-")
    a = one(lo)
    b = one(hi) if sep else a
    if a < 1 or b < a:
        raise ValueError(f"sizes must satisfy 1 <= MIN <= MAX, not {text!r}")
    if b > MAX_MESSAGE:
        raise ValueError(f"sizes must be at most 64m ({MAX_MESSAGE} bytes), not {text!r}")
    return a, b


def parse_target(text: str) -> tuple[str, int]:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port). An IPv6 address needs its brackets (a bare
    "::1:80" is ambiguous), and a dotted-quad must be a valid IPv4 address: ValueError (a usage
    error) otherwise. Host names are resolved later (resolve())."""
    import ipaddress

    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or len(port) > 5:
        raise ValueError(f"expected HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {text!r}") from None
    elif ":" in host:
        raise ValueError(f"an IPv6 address needs brackets, as in [::1]:80, not {text!r}")
    elif all(c.isascii() and (c.isdigit() or c == ".") for c in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"not a valid IPv4 address: {text!r}") from None
    elif not host.isascii() or not host.isprintable() or " " in host:
        raise ValueError(f"not a host name: {text!r}")
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(f"port out of range in {text!r}")
    return host, p


def resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """(address family, socket address) of HOST:PORT, resolved once before connecting; a name
    that does not resolve is a one-line FdscopeError with the resolver's reason."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        reason = err.strerror if isinstance(err, socket.gaierror) and err.strerror else str(err)
        raise FdscopeError(f"cannot resolve {host}: {reason}") from err
    family, _type, _proto, _name, addr = infos[0]
    return family, addr
