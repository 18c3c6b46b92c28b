"""Shared machinery of the probes: expectations, measured observations, and the verdict.

A probe is split in two so the comparison can be tested on its own:

- ``observe(...) -> Observation`` performs the syscalls and records what the kernel reported at
  each step (event names, a count, or an error text), keyed by step id;
- ``expectations(ctx, kernel) -> list[Expect]`` states what the documentation says each step
  must report, with its source.

``judge()`` joins the two into a ``ProbeResult`` whose verdict is ``matches``, ``deviates`` (with
the first deviating step) or ``skipped`` (with the reason). Feeding ``judge()`` a fake
observation is how the tests prove a verdict can fail.
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Verdict = Literal["matches", "deviates", "skipped"]

# Rules that compare an observed value with an expected one (see Expect.check).
#   equals: same event names (order ignored), same int or same string
#   range:  expected is [lo, hi]; observed int within it (inclusive)
#   error:  observed is an error text starting with the expected exception name
#   one_of: expected is a list of acceptable values, each compared as `equals`
#   contains: observed is a list holding every item of the expected list (and maybe more)
Rule = Literal["equals", "range", "error", "one_of", "contains"]

# How long a wait may take to say "nothing": on loopback and local socketpairs/pipes the writer's
# syscall runs the waiters' wake-up callbacks before it returns (fs/eventpoll.c ep_poll_callback,
# called from the socket's or pipe's wake_up), so readiness is settled when write() returns; for
# TCP the loopback softirq runs on the same CPU at local_bh_enable. 20 ms is several hundred
# times that delay (tens of microseconds) yet keeps `probe --all` under a second of waiting.
QUIET_MS = 20


class Skip(Exception):
    """Raised by observe() when the probe cannot run here; the message is the reason."""


@dataclass(frozen=True)
class Expect:
    """What the documentation says step `key` reports."""

    key: str
    action: str
    expected: Any
    source: str
    rule: Rule = "equals"

    def check(self, observed: Any) -> bool:
        if self.rule == "one_of":
            return any(_equal(observed, e) for e in self.expected)
        if self.rule == "range":
            lo, hi = self.expected
            return isinstance(observed, int) and not isinstance(observed, bool) and lo <= observed <= hi
        if self.rule == "contains":
            return isinstance(observed, list) and all(e in observed for e in self.expected)
        if self.rule == "error":
            return isinstance(observed, str) and observed.startswith(f"{self.expected}:")
        return _equal(observed, self.expected)


def _equal(observed: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return isinstance(observed, list) and sorted(map(str, observed)) == sorted(map(str, expected))
    if isinstance(expected, bool) or isinstance(observed, bool):
        return observed is expected
    return type(observed) is type(expected) and observed == expected


@dataclass(frozen=True)
class StepSkip:
    """A step that could not be observed here; it neither matches nor deviates."""

    reason: str


@dataclass
class Observation:
    """What observe() measured: `values[key]` per step, `ctx` for expectations (fd numbers...)."""

    values: dict[str, Any] = field(default_factory=dict)
    ctx: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)

    def record(self, key: str, value: Any) -> Any:
        self.values[key] = value
        return value


@dataclass(frozen=True)
class Step:
    """One measured step of a probe: what was done, what the kernel did, what was expected."""

    key: str
    action: str
    observed: Any
    expected: Any
    ok: bool | None
    rule: str
    source: str
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = {
            "key": self.key,
            "action": self.action,
            "observed": self.observed,
            "expected": self.expected,
            "ok": self.ok,
            "rule": self.rule,
            "source": self.source,
        }
        if self.skipped is not None:
            doc["skipped"] = self.skipped
        return doc


@dataclass(frozen=True)
class ProbeResult:
    """A probe's steps and its verdict against the documentation."""

    name: str
    variant: str | None
    transport: str | None
    steps: tuple[Step, ...]
    verdict: Verdict
    note: str
    deviating_step: int | None = None
    reason: str | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float | None = None

    @property
    def title(self) -> str:
        return f"{self.name} ({self.variant})" if self.variant else self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "variant": self.variant,
            "transport": self.transport,
            "steps": [s.to_json() for s in self.steps],
            "verdict": self.verdict,
            "deviating_step": self.deviating_step,
            "deviating_action": (
                self.steps[self.deviating_step - 1].action if self.deviating_step else None
            ),
            "reason": self.reason,
            "note": self.note,
            "measured": self.measured,
            "elapsed_ms": self.elapsed_ms,
        }


NOT_OBSERVED = "not observed (an earlier step failed)"


def judge(
    name: str,
    expects: Sequence[Expect],
    obs: Observation,
    *,
    variant: str | None = None,
    transport: str | None = None,
    note: str = "",
) -> ProbeResult:
    """Compare each expectation with its observation; the first mismatch names the verdict."""
    steps: list[Step] = []
    first_bad: int | None = None
    for i, exp in enumerate(expects, start=1):
        value = obs.values.get(exp.key, NOT_OBSERVED)
        if isinstance(value, StepSkip):
            steps.append(Step(exp.key, exp.action, None, exp.expected, None, exp.rule, exp.source, value.reason))
            continue
        ok = exp.check(value)
        steps.append(Step(exp.key, exp.action, value, exp.expected, ok, exp.rule, exp.source))
        if not ok and first_bad is None:
            first_bad = i
    notes = [n for n in (note, *obs.notes) if n]
    return ProbeResult(
        name=name,
        variant=variant,
        transport=transport,
        steps=tuple(steps),
        verdict="deviates" if first_bad is not None else "matches",
        note=" ".join(notes),
        deviating_step=first_bad,
        measured=dict(obs.measured),
    )


def skipped(name: str, reason: str, *, variant: str | None = None, transport: str | None = None,
            note: str = "") -> ProbeResult:
    return ProbeResult(name, variant, transport, (), "skipped", note, reason=reason)


def timed(fn: Callable[[], ProbeResult]) -> ProbeResult:
    """Run one probe and stamp its wall time."""
    t0 = time.perf_counter()
    res = fn()
    return replace(res, elapsed_ms=round((time.perf_counter() - t0) * 1000, 1))


# ---------------------------------------------------------------- measuring helpers

def event_names(mask: int) -> list[str]:
    """Names of the bits in an epoll event mask, as fdscope's fdinfo decoder names them."""
    from fdscope.parse.events import decode_epoll_mask

    return list(decode_epoll_mask(mask))


def wait_events(ep: select.epoll, fd: int | None = None, timeout_ms: int = QUIET_MS) -> list[str]:
    """One epoll_wait: the event names reported for `fd` (or for every fd if None)."""
    names: list[str] = []
    for rfd, mask in ep.poll(timeout_ms / 1000, 64):
        if fd is None or rfd == fd:
            names.extend(event_names(mask))
    return names


def wait_fds(ep: select.epoll, timeout_ms: int = QUIET_MS) -> list[str]:
    """One epoll_wait, reported as 'FD:EVENT' strings (data == fd for Python's epoll)."""
    out = []
    for rfd, mask in ep.poll(timeout_ms / 1000, 64):
        out.extend(f"{rfd}:{n}" for n in event_names(mask))
    return out


def error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def stopped(obs: Observation, err: OSError, part: str = "Stopped") -> None:
    """An observation cut short by `err`: the note says where and why (the steps it did not
    reach show as not observed). Running out of fds is no observation of the kernel's epoll
    or select: it is raised on, and the command reports the limit."""
    from fdscope.errors import is_out_of_fds

    if is_out_of_fds(err):
        raise err
    obs.notes.append(f"{part}: {error_text(err)}.")


def kernel_release() -> str:
    return os.uname().release


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release string such as '6.18.44-foo'; (0, 0) if unreadable."""
    m = re.match(r"(\d+)\.(\d+)", release or kernel_release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


# ---------------------------------------------------------------- transports

TRANSPORTS = ("socketpair", "pipe", "tcp")


@dataclass
class Channel:
    """A one-way channel under test: we watch `rx` for input and `tx` for output space; the
    peer writes into `rx` through `peer_tx` and drains `tx` through `peer_rx`."""

    transport: str
    rx: int
    tx: int
    peer_tx: int
    peer_rx: int
    closers: dict[int, Callable[[], None]] = field(default_factory=dict)

    def close(self, fd: int) -> None:
        """Close one of our fds once; later calls (the ExitStack's) do nothing, so a number the
        kernel has meanwhile given to another file is never closed by mistake."""
        closer = self.closers.pop(fd, None)
        if closer is not None:
            closer()

    rx_socket: socket.socket | None = None
    peer_socket: socket.socket | None = None


def open_channel(transport: str, stack: ExitStack, small_buffers: bool = True) -> Channel:
    """Non-blocking endpoints for `transport`; everything is closed when `stack` unwinds."""
    if transport == "socketpair":
        a, b = socket.socketpair()
        for s in (a, b):
            s.setblocking(False)
            if small_buffers:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        return _socket_channel(transport, a, b, stack)
    if transport == "pipe":
        r1, w1 = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        r2, w2 = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Ours: read end r1 (peer writes w1); write end w2 (peer drains r2).
        ch = Channel(transport, r1, w2, w1, r2)
        for fd in (r1, w1, r2, w2):
            ch.closers[fd] = lambda fd=fd: os.close(fd)
            stack.callback(ch.close, fd)
        return ch
    if transport == "tcp":
        a, b = tcp_pair(stack, small_buffers)
        return _socket_channel(transport, a, b, stack)
    raise ValueError(f"unknown transport {transport!r}")


def _socket_channel(transport: str, a: socket.socket, b: socket.socket, stack: ExitStack) -> Channel:
    ch = Channel(transport, a.fileno(), a.fileno(), b.fileno(), b.fileno())
    ch.closers[a.fileno()] = a.close
    ch.closers[b.fileno()] = b.close
    ch.rx_socket = a
    ch.peer_socket = b
    stack.callback(a.close)
    stack.callback(b.close)
    return ch


def tcp_pair(stack: ExitStack, small_buffers: bool = True) -> tuple[socket.socket, socket.socket]:
    """A connected TCP pair on 127.0.0.1 (loopback only), both non-blocking."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stack.callback(lsock.close)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stack.callback(a.close)
    if small_buffers:
        # Small buffers keep "fill to EAGAIN" to a few kilobytes (set before connect: the
        # window scale is negotiated in the handshake, tcp(7) SO_RCVBUF).
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    a.connect(lsock.getsockname())
    b, _ = lsock.accept()
    stack.callback(b.close)
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
    return a, b


def write_bytes(fd: int, n: int) -> int:
    """Write n bytes (one call); returns what the kernel took."""
    return os.write(fd, b"x" * n)


def read_some(fd: int, n: int) -> int:
    return len(os.read(fd, n))


def read_to_eagain(fd: int) -> int:
    """Read until EAGAIN (the edge-triggered contract, epoll(7)); returns bytes read."""
    total = 0
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return total
        if not data:
            return total
        total += len(data)


def fill_to_eagain(fd: int, transport: str) -> int:
    """Write until the kernel refuses with EAGAIN; returns bytes accepted.

    On TCP an ACK arriving later can free send space again, so we retry after a short pause
    until a write fails at once: the buffer is full and stays full."""
    total = 0
    chunk = b"x" * 4096
    for _ in range(50):
        while True:
            try:
                total += os.write(fd, chunk)
            except BlockingIOError:
                break
        if transport != "tcp":
            return total
        time.sleep(0.002)
        try:
            total += os.write(fd, chunk)
        except BlockingIOError:
            return total
    return total


def drain(fd: int, transport: str, sender: int) -> int:
    """Read everything the peer can see; on TCP until the sender's queue is empty too."""
    total = read_to_eagain(fd)
    if transport != "tcp":
        return total
    import fcntl
    import struct
    import termios

    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        # SIOCOUTQ (== TIOCOUTQ): bytes the sender has not had acknowledged yet, tcp(7).
        outq = struct.unpack("i", fcntl.ioctl(sender, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        total += read_to_eagain(fd)
        if outq == 0:
            break
        time.sleep(0.001)
    return total


