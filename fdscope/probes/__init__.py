"""Live kernel experiments on epoll, select and poll (`fdscope probe`).

Each module holds one probe: a docstring with the facts it checks and their sources,
`observe(...)` (syscalls, measured), `expectations(ctx, kernel)` (what the documentation says)
and `run(...)`, which joins them through `fdscope.probes.core.judge`. This module is the
registry: which probes exist, which transports they accept, and how `--all` runs them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fdscope.probes.core import ProbeResult, kernel_release, timed

SCHEMA = "fdscope.probe/1"
TRIGGER_MODES = ("level", "edge")


@dataclass(frozen=True)
class ProbeSpec:
    """One probe: its name, one-line summary, transports and the function that runs it."""

    name: str
    summary: str
    transports: tuple[str, ...]
    default_transport: str
    run: Callable[[str, str, str], ProbeResult]  # (transport, mode, kernel) -> result


def _trigger(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import trigger

    return trigger.run(mode, transport, kernel)


def _oneshot(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import oneshot

    return oneshot.run(transport, kernel)


def _fdsetsize(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import fdsetsize

    return fdsetsize.run(kernel)


def _stale(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import stale

    return stale.run(transport, kernel)


def _exclusive(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import exclusive

    return exclusive.run(kernel)


def _rdhup(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import rdhup

    return rdhup.run(transport, kernel)


def _uring(transport: str, mode: str, kernel: str) -> ProbeResult:
    from fdscope.probes import uring

    return uring.run(kernel)


ALL_TRANSPORTS = ("socketpair", "pipe", "tcp")

PROBES: dict[str, ProbeSpec] = {
    spec.name: spec
    for spec in (
        ProbeSpec("trigger", "level- vs edge-triggered EPOLLIN and EPOLLOUT", ALL_TRANSPORTS,
                  "socketpair", _trigger),
        ProbeSpec("oneshot", "EPOLLONESHOT: one report, silence until EPOLL_CTL_MOD; fdinfo mask",
                  ALL_TRANSPORTS, "socketpair", _oneshot),
        ProbeSpec("fdsetsize", "select() rejects fd 1024, poll() and epoll accept it",
                  ("socketpair",), "socketpair", _fdsetsize),
        ProbeSpec("stale", "closing a dup'ed fd leaves its epoll registration alive",
                  ALL_TRANSPORTS, "socketpair", _stale),
        ProbeSpec("exclusive", "wake-ups of 4 waiters without and with EPOLLEXCLUSIVE",
                  ("tcp-listen",), "tcp-listen", _exclusive),
        ProbeSpec("rdhup", "peer shutdown(SHUT_WR): EPOLLRDHUP|EPOLLIN, read() == 0",
                  ("socketpair", "tcp"), "socketpair", _rdhup),
        ProbeSpec("io_uring", "SQ/CQ ring indices in fdinfo move on submit and completion",
                  ("ring",), "ring", _uring),
    )
}


@dataclass(frozen=True)
class Plan:
    """One probe run: which probe, on which transport, in which trigger mode."""

    name: str
    transport: str
    mode: str = ""


def plan(names: Sequence[str], *, modes: Sequence[str] = TRIGGER_MODES,
         transport: str | None = None) -> list[Plan]:
    """The runs for `names`: trigger once per mode (and, for --all without --transport, once per
    transport); other probes on `transport` where they accept it, else on their own."""
    runs: list[Plan] = []
    many = len(names) > 1
    for name in names:
        spec = PROBES[name]
        if name == "trigger":
            transports = [transport] if transport else ([*ALL_TRANSPORTS] if many else [spec.default_transport])
            runs.extend(Plan(name, t, m) for t in transports for m in modes)
        else:
            use = transport if transport and (transport in spec.transports or name == "rdhup") else spec.default_transport
            runs.append(Plan(name, use))
    return runs


@dataclass
class ProbeReport:
    """The results of one `fdscope probe` run, with the kernel they ran on."""

    kernel: str
    machine: str
    results: list[ProbeResult] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def deviates(self) -> bool:
        return any(r.verdict == "deviates" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        counts = {v: sum(1 for r in self.results if r.verdict == v)
                  for v in ("matches", "deviates", "skipped")}
        return {
            "schema": SCHEMA,
            "kernel": self.kernel,
            "machine": self.machine,
            "probes": [r.to_json() for r in self.results],
            "summary": counts,
            "elapsed_ms": self.elapsed_ms,
        }


def run_probes(runs: Sequence[Plan], kernel: str | None = None) -> ProbeReport:
    """Run the planned probes one after another and time the whole."""
    report = ProbeReport(kernel or kernel_release(), os.uname().machine)
    t0 = time.perf_counter()
    for p in runs:
        spec = PROBES[p.name]
        try:
            report.results.append(timed(lambda spec=spec, p=p: spec.run(p.transport, p.mode,
                                                                        report.kernel)))
        except OSError as err:
            from fdscope.errors import OutOfFds, is_out_of_fds

            if is_out_of_fds(err):
                raise OutOfFds(err.errno or 0, f"probe {p.name} on {p.transport}") from err
            raise
    report.elapsed_ms = round((time.perf_counter() - t0) * 1000, 1)
    return report
