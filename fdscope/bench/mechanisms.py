"""The readiness mechanisms `fdscope bench scaling` compares, one small class each over one
contract (as CPython's selectors.py does): a mechanism watches a set of fds and passes the token
ring's events to the shared handler; it states only how it waits.

WaitLoop mechanisms (select, poll, epoll, epoll-et, selectors) are driven by the harness's loop
(fdscope.bench.harness.drive) through their `wait()`; the asyncio ones run the handler as a
reader callback on their own event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import select
import selectors
import time
from typing import Any, ClassVar

from fdscope.bench.harness import READ_CHUNK, TOKEN, Budget, Fds, drive
from fdscope.errors import FdscopeError
from fdscope.servers.core import FD_SETSIZE


class Mechanism:
    """One way to wait for readiness.

    `refusal(fds)` says why the mechanism cannot watch these fds (None if it can);
    `measure(fds, budget)` returns (per-event ns, wait-call ns or None when the wait call is
    out of reach)."""

    name: ClassVar[str] = ""
    calls: ClassVar[str] = ""  # what it calls to wait, for the report
    requires: ClassVar[str | None] = None  # an optional module it needs

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this mechanism cannot run in this install (a missing optional module), or None."""
        if cls.requires is None:
            return None
        try:
            importlib.import_module(cls.requires)
        except ImportError:
            return (f"{cls.requires} is not installed "
                    f"(pip install 'fdscope[{cls.requires}]')")
        return None

    def refusal(self, fds: Fds) -> str | None:
        return None

    def measure(self, fds: Fds, budget: Budget) -> tuple[list[int], list[int] | None]:
        raise NotImplementedError


class WaitLoop(Mechanism):
    """A mechanism with a wait call the harness drives: open, wait() -> ready fds, close."""

    def open(self, watched: list[int]) -> None:
        raise NotImplementedError

    def wait(self) -> list[int]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def measure(self, fds: Fds, budget: Budget) -> tuple[list[int], list[int] | None]:
        assert fds.ring is not None
        self.open(fds.watched)
        try:
            return drive(self.wait, fds.ring, budget)
        finally:
            self.close()


class Select(WaitLoop):
    """select.select() on the whole list, which CPython turns into three fd_set bitmaps on
    every call."""

    name = "select"
    calls = "select(2): three fd_set bitmaps rebuilt from a list each call"

    def refusal(self, fds: Fds) -> str | None:
        top = fds.max_fd
        if top < FD_SETSIZE:
            return None
        # Ask CPython rather than assume: it refuses an fd >= FD_SETSIZE before the syscall.
        try:
            select.select([top], [], [], 0)
        except ValueError as err:
            return f"fd {top} >= FD_SETSIZE {FD_SETSIZE}: select.select() raises ValueError ({err})"
        return None

    def open(self, watched: list[int]) -> None:
        self._rlist = list(watched)

    def wait(self) -> list[int]:
        return select.select(self._rlist, (), ())[0]


class Poll(WaitLoop):
    """select.poll: the pollfd array is kept between calls, and passed on every call."""

    name = "poll"
    calls = "poll(2): an 8-byte pollfd per fd passed on every call"
    _new: Any = staticmethod(select.poll)
    _READ = select.POLLIN

    def open(self, watched: list[int]) -> None:
        self._p = self._new()
        for fd in watched:
            self._p.register(fd, self._READ)
        self._poll = self._p.poll

    def wait(self) -> list[int]:
        return [fd for fd, _ in self._poll()]


class Epoll(Poll):
    """Level-triggered epoll: registered once with epoll_ctl, epoll_wait returns ready fds."""

    name = "epoll"
    calls = "epoll_wait(2), level-triggered; fds registered once (epoll_ctl)"
    _new = staticmethod(select.epoll)
    _READ = select.EPOLLIN

    def close(self) -> None:
        self._p.close()


class EpollET(Epoll):
    name = "epoll-et"
    calls = "epoll_wait(2), edge-triggered (EPOLLET)"
    _READ = select.EPOLLIN | select.EPOLLET


class Selectors(WaitLoop):
    """selectors.DefaultSelector, which is EpollSelector on Linux."""

    name = "selectors"
    calls = f"selectors.DefaultSelector ({selectors.DefaultSelector.__name__})"

    def open(self, watched: list[int]) -> None:
        self._sel = selectors.DefaultSelector()
        for fd in watched:
            self._sel.register(fd, selectors.EVENT_READ)

    def wait(self) -> list[int]:
        return [key.fd for key, _ in self._sel.select()]

    def close(self) -> None:
        self._sel.close()


def _never() -> None:
    raise FdscopeError("an idle fd was reported ready")


class _TimedSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The default selector, timing each select() call asyncio makes."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[int] = []

    def select(self, timeout: float | None = None) -> Any:
        t0 = time.perf_counter_ns()
        ready = super().select(timeout)
        self.waits.append(time.perf_counter_ns() - t0)
        return ready


class Asyncio(Mechanism):
    """The handler as loop.add_reader() callbacks on asyncio's default loop (a selector loop
    over EpollSelector on Linux); every idle fd has a reader too."""

    name = "asyncio"
    calls = "asyncio SelectorEventLoop.add_reader over EpollSelector"

    def new_loop(self) -> tuple[asyncio.AbstractEventLoop, list[int] | None]:
        sel = _TimedSelector()
        return asyncio.SelectorEventLoop(sel), sel.waits

    def measure(self, fds: Fds, budget: Budget) -> tuple[list[int], list[int] | None]:
        ring = fds.ring
        assert ring is not None
        loop, waits = self.new_loop()
        clock = time.perf_counter_ns
        read, write, nxt = os.read, os.write, ring.next_writer
        events: list[int] = []
        deadline = clock() + int(budget.seconds * 1e9)
        last = [0]

        def on_ready(fd: int) -> None:
            now = clock()
            events.append(now - last[0])
            last[0] = now
            read(fd, READ_CHUNK)
            write(nxt[fd], TOKEN)
            if len(events) >= budget.max_events or (now >= deadline
                                                     and len(events) >= budget.min_events):
                loop.stop()

        def start() -> None:
            last[0] = clock()
            ring.start()

        try:
            for fd in fds.idle:
                loop.add_reader(fd, _never)
            for fd in ring.readers:
                loop.add_reader(fd, on_ready, fd)
            loop.call_soon(start)
            loop.run_forever()
        finally:
            for fd in fds.watched:
                loop.remove_reader(fd)
            loop.close()
            ring.reset()
        return events, waits


class AsyncioUvloop(Asyncio):
    """The same callbacks on uvloop (libuv's epoll loop, in C); its epoll_wait call is inside
    libuv, out of reach, so only the per-event cost is measured."""

    name = "asyncio-uvloop"
    calls = "uvloop Loop.add_reader (libuv, epoll)"
    requires = "uvloop"

    def new_loop(self) -> tuple[asyncio.AbstractEventLoop, list[int] | None]:
        import uvloop

        return uvloop.new_event_loop(), None


class IoUring(WaitLoop):
    """io_uring: one multishot IORING_OP_POLL_ADD per fd, armed once (as epoll_ctl is), and
    io_uring_enter(min_complete=1) returns a CQE per readiness event (io_uring/poll.c;
    IORING_POLL_ADD_MULTI since 5.13). A CQE without IORING_CQE_F_MORE ended the multishot
    poll, which is armed again."""

    name = "io_uring"
    calls = "io_uring_enter(2), min_complete=1; a multishot POLL_ADD per fd, armed once"

    @classmethod
    def unavailable(cls) -> str | None:
        from fdscope.uring import available

        return available()

    def open(self, watched: list[int]) -> None:
        from fdscope.uring import Ring

        self._ring = Ring(min(4096, max(64, len(watched))))
        for fd in watched:
            self._arm(fd)
        self._ring.submit()

    def _arm(self, fd: int) -> None:
        from fdscope.uring import OP

        ring = self._ring
        # sqe->len = IORING_POLL_ADD_MULTI; the poll mask goes in poll32_events (rw_flags).
        try:
            ring.queue(OP["POLL_ADD"], fd, length=1, op_flags=select.POLLIN, user_data=fd,
                       publish=False)
        except BlockingIOError:  # the SQ ring is full: submit what is queued first
            ring.submit()
            ring.queue(OP["POLL_ADD"], fd, length=1, op_flags=select.POLLIN, user_data=fd,
                       publish=False)

    def wait(self) -> list[int]:
        ring = self._ring
        while True:
            try:
                ring.submit(wait=1)
                break
            except InterruptedError:
                continue
        ready = []
        for cqe in ring.completions():
            if cqe.res < 0:
                raise FdscopeError(f"io_uring poll on fd {cqe.user_data}: errno {-cqe.res}")
            ready.append(cqe.user_data)
            if not cqe.flags & 2:  # IORING_CQE_F_MORE: the multishot poll stays armed
                self._arm(cqe.user_data)
        return ready

    def close(self) -> None:
        self._ring.close()


MECHANISMS: dict[str, type[Mechanism]] = {
    m.name: m for m in (Select, Poll, Epoll, EpollET, Selectors, Asyncio, AsyncioUvloop,
                        IoUring)
}
