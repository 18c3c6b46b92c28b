"""`fdscope bench register`: registering N fds once (epoll_ctl) against passing all N on every
call (poll's pollfd array, select's bitmaps): bytes the kernel copies per call, and µs.

Each call waits with timeout 0 on N idle fds, so nothing is ready and the figure is the price
of the set's size alone: copy it in, look at every fd (select, poll) or at the ready list
(epoll), copy the result out. A zero timeout also skips the wait-queue registration a sleeping
call makes on every fd (fs/select.c do_poll: "Optimise the no-wait case").

`poll (copy only)` calls poll(2) through ctypes with N entries whose fd is -1: the kernel copies
the array in and the revents out but skips negative fds (poll(2)), which isolates the copying
from the scanning.
"""

from __future__ import annotations

import ctypes
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fdscope.bench.fit import growth
from fdscope.bench.harness import (
    FdLimitTooLow,
    fds_needed,
    nofile_at_least,
    open_fds,
    quiet_gc,
    summarize_ns,
)
from fdscope.bench.scaling import SCHEMA, machine_facts
from fdscope.servers.core import FD_SETSIZE

DEFAULT_FDS = (1, 10, 100, 1000, 10000)
QUICK_FDS = (1, 100, 2000)
POLLFD_SIZE = 8  # struct pollfd: int fd, short events, short revents (poll(2))
REVENTS_SIZE = 2  # do_sys_poll copies back only each entry's revents (fs/select.c)
# struct epoll_event is packed to 12 bytes on x86-64 (EPOLL_PACKED in
# include/uapi/linux/eventpoll.h), 16 elsewhere.
EPOLL_EVENT_SIZE = 12 if os.uname().machine == "x86_64" else 16
ROWS = ("epoll", "poll", "poll (copy only)", "select")


def fds_bytes(nfds: int) -> int:
    """Bytes of one fd_set the kernel copies for `nfds`: whole longs (fs/select.c FDS_BYTES)."""
    return -(-nfds // 64) * 8


@dataclass(frozen=True)
class RegisterConfig:
    """Sizes to measure and the time given to each."""

    fds: tuple[int, ...] = DEFAULT_FDS
    seconds: float = 0.2
    min_calls: int = 50
    max_calls: int = 100_000
    quick: bool = False


def quick_register_config() -> RegisterConfig:
    return RegisterConfig(fds=QUICK_FDS, seconds=0.03, min_calls=20, quick=True)


class _PollFd(ctypes.Structure):
    _fields_ = (("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short))


def _libc_poll() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.poll
    fn.argtypes = (ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def _time_calls(call: Callable[[], Any], cfg: RegisterConfig) -> list[int]:
    clock = time.perf_counter_ns
    out: list[int] = []
    deadline = clock() + int(cfg.seconds * 1e9)
    while True:
        t0 = clock()
        call()
        t1 = clock()
        out.append(t1 - t0)
        if len(out) >= cfg.max_calls or (t1 >= deadline and len(out) >= cfg.min_calls):
            return out


def _row(mech: str, n: int, **fields: Any) -> dict[str, Any]:
    row = {"mechanism": mech, "fds": n, "status": "measured", "reason": None,
           "setup_us": None, "setup_syscalls": 0, "bytes_once": 0,
           "bytes_in_per_call": None, "bytes_out_per_call": None, "call_us": None}
    row.update(fields)
    return row


def _measure(n: int, watched: list[int], cfg: RegisterConfig,
             poll_raw: Callable[..., int]) -> list[dict[str, Any]]:
    rows = []
    warm = 5
    clock = time.perf_counter_ns

    # epoll: N epoll_ctl(ADD) once, then epoll_wait per call copies out only ready events.
    ep = select.epoll()
    try:
        t0 = clock()
        for fd in watched:
            ep.register(fd, select.EPOLLIN)
        setup = (clock() - t0) / 1000
        calls = summarize_ns(_time_calls(lambda: ep.poll(0), cfg), warm)
    finally:
        ep.close()
    rows.append(_row("epoll", n, setup_us=round(setup, 1), setup_syscalls=n,
                     bytes_once=EPOLL_EVENT_SIZE * n, bytes_in_per_call=0,
                     bytes_out_per_call=0, call_us=calls.to_json() if calls else None))

    # poll: registering fills CPython's dict (no syscall); every call passes the whole array.
    p = select.poll()
    t0 = clock()
    for fd in watched:
        p.register(fd, select.POLLIN)
    setup = (clock() - t0) / 1000
    calls = summarize_ns(_time_calls(lambda: p.poll(0), cfg), warm)
    rows.append(_row("poll", n, setup_us=round(setup, 1), bytes_in_per_call=POLLFD_SIZE * n,
                     bytes_out_per_call=REVENTS_SIZE * n,
                     call_us=calls.to_json() if calls else None))

    # poll(2) on N entries with fd -1: the copies without the per-fd poll.
    arr = (_PollFd * n)()
    for e in arr:
        e.fd, e.events = -1, select.POLLIN
    ref = ctypes.addressof(arr)
    calls = summarize_ns(_time_calls(lambda: poll_raw(ref, n, 0), cfg), warm)
    rows.append(_row("poll (copy only)", n, bytes_in_per_call=POLLFD_SIZE * n,
                     bytes_out_per_call=REVENTS_SIZE * n,
                     call_us=calls.to_json() if calls else None))

    # select: CPython builds three fd_sets from the lists and passes all three every call.
    top = max(watched)
    if top >= FD_SETSIZE:
        try:
            select.select([top], [], [], 0)
            reason = None
        except ValueError as err:
            reason = f"fd {top} >= FD_SETSIZE {FD_SETSIZE}: select.select() raises ValueError ({err})"
        if reason:
            rows.append(_row("select", n, status="refused", reason=reason))
            return rows
    rlist = list(watched)
    calls = summarize_ns(_time_calls(lambda: select.select(rlist, (), (), 0), cfg), warm)
    per_set = fds_bytes(top + 1)
    rows.append(_row("select", n, bytes_in_per_call=3 * per_set, bytes_out_per_call=3 * per_set,
                     call_us=calls.to_json() if calls else None))
    return rows


def run_register(cfg: RegisterConfig, progress: Callable[[int], None] | None = None
                 ) -> dict[str, Any]:
    """Measure every row at every size; the fdscope.bench/1 register document."""
    t_start = time.monotonic()
    machine = machine_facts()
    poll_raw = _libc_poll()
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    raised_to = None
    for n in sorted(set(cfg.fds)):
        try:
            with nofile_at_least(fds_needed(n, 0)) as raised:
                if raised:
                    raised_to = max(raised_to or 0, raised["to"])
                fds = open_fds(n, 0, "unix", True)
                try:
                    with quiet_gc():
                        rows.extend(_measure(n, fds.watched, cfg, poll_raw))
                finally:
                    fds.close()
        except FdLimitTooLow as err:
            rows.extend(_row(m, n, status="refused", reason=str(err)) for m in ROWS)
            problems.append(f"{n} fds: {err}")
        if progress:
            progress(1)
    order = {m: i for i, m in enumerate(ROWS)}
    rows.sort(key=lambda r: (order[r["mechanism"]], r["fds"]))
    fits: dict[str, Any] = {}
    for m in ROWS:
        pts = [(r["fds"], r["call_us"]["median"]) for r in rows
               if r["mechanism"] == m and r["status"] == "measured" and r["call_us"]]
        g = growth([p[0] for p in pts], [p[1] for p in pts]) if pts else None
        fits[m] = None if g is None else g.to_json()
    return {
        "schema": SCHEMA,
        "benchmark": "register",
        "machine": {**machine, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "config": {"fds": sorted(set(cfg.fds)), "seconds_per_cell": cfg.seconds,
                   "min_calls": cfg.min_calls, "max_calls": cfg.max_calls, "quick": cfg.quick,
                   "fd_kind": "unix", "timeout": 0},
        "epoll_event_size": EPOLL_EVENT_SIZE,
        "rlimit_nofile_raised_to": raised_to,
        "rows": rows,
        "growth": fits,
        "breakeven": _breakeven(rows),
        "elapsed_s": round(time.monotonic() - t_start, 2),
        "problems": problems,
        "ok": not problems,
    }


def _breakeven(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: after how many calls epoll's one-time registration has cost less than what
    poll spends per call beyond epoll_wait."""
    out = []
    by = {(r["mechanism"], r["fds"]): r for r in rows if r["status"] == "measured"}
    for (mech, n), ep in sorted(by.items()):
        if mech != "epoll" or ("poll", n) not in by:
            continue
        extra = by[("poll", n)]["call_us"]["median"] - ep["call_us"]["median"]
        calls = ep["setup_us"] / extra if extra > 0 else None
        out.append({"fds": n, "epoll_setup_us": ep["setup_us"],
                    "poll_extra_us_per_call": round(extra, 3),
                    "calls": None if calls is None else round(calls, 1)})
    return out
