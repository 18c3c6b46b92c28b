"""What every benchmark shares: the fds it watches, the token ring that makes events, the fd
limit, the clock and the statistics.

The workload (libevent's bench.c, the C10K notes): N idle connected sockets that never become
readable, plus K active socketpairs that pass one token round-robin. The handler of a readable
end reads the token and writes it into the next pair, so every wait delivers exactly one event
and the next one is ready before the next wait starts. What changes with N is only how many
quiet fds the mechanism has to look at (or not) to find it.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import resource
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fdscope.errors import FdscopeError

# Extra fds on top of the benchmark's own: stdio, the event loops' epoll fds, self-pipes,
# whatever the caller holds open.
FD_HEADROOM = 256
TOKEN = b"t"
READ_CHUNK = 4096
IDLE_KINDS = ("unix", "tcp")


class FdLimitTooLow(FdscopeError):
    """The hard RLIMIT_NOFILE does not allow the fds a benchmark size needs."""


@dataclass(frozen=True)
class Budget:
    """How long one measurement runs: at least `min_events` and `seconds`, at most
    `max_events`; the first `warmup` samples are dropped."""

    seconds: float
    min_events: int
    max_events: int
    warmup: int


def fds_needed(idle: int, active: int) -> int:
    return idle + idle % 2 + 2 * active + FD_HEADROOM


@contextlib.contextmanager
def nofile_at_least(need: int) -> Iterator[dict[str, int] | None]:
    """Raise the soft RLIMIT_NOFILE to `need` for the block (never above the hard limit) and
    restore it afterwards; yields {"from", "to"} when it was raised. FdLimitTooLow when the
    hard limit is below `need`.

    poll(2) also checks the limit: more pollfds than RLIMIT_NOFILE is EINVAL
    (fs/select.c do_sys_poll), so the soft limit must cover the watched set, not just the fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        yield None
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FdLimitTooLow(
            f"needs about {need} fds but the hard RLIMIT_NOFILE is {hard} "
            f"(raise it: ulimit -Hn, systemd LimitNOFILE=)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield {"from": soft, "to": need}
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Ring:
    """K socketpairs passing one token round-robin: the reader of pair i hands it to the writer
    of pair i+1. Non-blocking, so `reset` can drain a token left in flight."""

    def __init__(self, pairs: int) -> None:
        self.socks: list[socket.socket] = []
        try:
            for _ in range(pairs):
                self.socks.extend(socket.socketpair())
        except OSError:
            self.close()
            raise
        for s in self.socks:
            s.setblocking(False)
        self.writers = [s.fileno() for s in self.socks[0::2]]
        self.readers = [s.fileno() for s in self.socks[1::2]]
        self.next_writer = {r: self.writers[(i + 1) % pairs] for i, r in enumerate(self.readers)}

    def start(self) -> None:
        os.write(self.writers[0], TOKEN)

    def reset(self) -> None:
        for fd in self.readers:
            with contextlib.suppress(BlockingIOError):
                os.read(fd, READ_CHUNK)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def _idle_unix(count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for _ in range((count + 1) // 2):
        socks.extend(socket.socketpair())
    return socks


def _idle_tcp(count: int) -> list[socket.socket]:
    """Connected loopback TCP sockets, both ends of each connection kept: count fds."""
    socks: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=128) as lst:
        addr = lst.getsockname()
        for _ in range((count + 1) // 2):
            c = socket.create_connection(addr)
            s, _ = lst.accept()
            socks.extend((c, s))
    return socks


def _close_all(socks: Iterable[socket.socket]) -> None:
    for s in socks:
        if s.family != socket.AF_UNIX:
            # RST instead of FIN: thousands of closed loopback connections would otherwise sit
            # in TIME_WAIT holding ephemeral ports (socket(7) SO_LINGER).
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


class Fds:
    """`idle` fds that never become readable and, with `active` > 0, a token Ring.

    `active_high`: the ring's fds are opened last, so they are the highest fd numbers and the
    last entries of a poll array or select bitmap. select and poll scan in that order and, until
    they meet a ready fd, add the caller to every fd's wait queue (fs/select.c do_poll: "kill
    poll_table->_qproc" once something is found), which is also what every wait that has to
    sleep does. With the ring first they find the token at once and only look at the rest.
    """

    def __init__(self, idle: int, active: int = 0, kind: str = "unix",
                 active_high: bool = True) -> None:
        if kind not in IDLE_KINDS:
            raise ValueError(f"idle socket kind must be one of {IDLE_KINDS}")
        self.kind = kind
        self._idle_socks: list[socket.socket] = []
        self.ring: Ring | None = None
        make = _idle_unix if kind == "unix" else _idle_tcp
        try:
            if active and not active_high:
                self.ring = Ring(active)
            self._idle_socks = make(idle)
            if active and active_high:
                self.ring = Ring(active)
        except OSError:
            self.close()
            raise
        self.idle = [s.fileno() for s in self._idle_socks[:idle]]
        readers = self.ring.readers if self.ring else []
        self.watched = self.idle + readers if active_high else readers + self.idle

    @property
    def max_fd(self) -> int:
        return max(self.watched) if self.watched else -1

    def close(self) -> None:
        _close_all(self._idle_socks)
        self._idle_socks = []
        if self.ring is not None:
            self.ring.close()
            self.ring = None


def open_fds(idle: int, active: int, kind: str, active_high: bool) -> Fds:
    """Fds(...), with running out of fds (EMFILE/ENFILE) as an FdscopeError that says so."""
    try:
        return Fds(idle, active, kind, active_high)
    except OSError as err:
        if err.errno in (errno.EMFILE, errno.ENFILE):
            raise FdLimitTooLow(f"ran out of fds opening {idle} idle sockets: {err.strerror}") \
                from err
        raise


@dataclass(frozen=True)
class Summary:
    """Nearest-rank percentiles of a list of samples, in µs."""

    count: int
    median: float
    p99: float
    mean: float

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "median": round(self.median, 3), "p99": round(self.p99, 3),
                "mean": round(self.mean, 3)}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n))."""
    n = len(sorted_values)
    rank = max(1, -(-p * n // 100))
    return sorted_values[min(n, int(rank)) - 1]


def summarize_ns(samples_ns: Sequence[int], warmup: int = 0) -> Summary | None:
    """Drop the first `warmup` samples (when enough remain) and summarise the rest in µs."""
    if len(samples_ns) > 2 * warmup:
        samples_ns = samples_ns[warmup:]
    if not samples_ns:
        return None
    s = sorted(samples_ns)
    return Summary(len(s), percentile(s, 50) / 1000, percentile(s, 99) / 1000,
                   sum(s) / len(s) / 1000)


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No garbage collection while measuring: a collection walking every registered object
    would land in some sample at random and say nothing about the mechanism."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def drive(wait: Callable[[], list[int]], ring: Ring, budget: Budget
          ) -> tuple[list[int], list[int]]:
    """Pass the token through `ring` with `wait` as the event loop: returns per-event costs
    and the wait call's own costs (ns).

    An event's cost is the time from one wait call's start to the next one's (the wait, the
    read of the token, the write to the next pair) divided by the events that call delivered
    (always one here). The handler reads up to READ_CHUNK bytes and trusts a short read to
    mean "drained", which epoll(7) allows for stream sockets, so edge-triggered needs no extra
    read that returns EAGAIN."""
    clock = time.perf_counter_ns
    read, write, nxt = os.read, os.write, ring.next_writer
    events: list[int] = []
    waits: list[int] = []
    deadline = clock() + int(budget.seconds * 1e9)
    ring.start()
    carried = 0
    t0 = clock()
    try:
        while True:
            ready = wait()
            t1 = clock()
            for fd in ready:
                read(fd, READ_CHUNK)
                write(nxt[fd], TOKEN)
            t2 = clock()
            waits.append(t1 - t0)
            n = len(ready)
            if n:
                per = (t2 - t0 + carried) // n
                events.extend([per] * n)
                carried = 0
            else:
                carried += t2 - t0
            t0 = t2
            if len(events) >= budget.max_events or (t2 >= deadline
                                                     and len(events) >= budget.min_events):
                break
    except KeyError as err:
        raise FdscopeError(f"an idle fd was reported ready: {err}") from None
    finally:
        ring.reset()
    return events, waits
