"""The inspect report: its types and its public JSON document (schema fdscope.inspect/1).

Rows (fds, registrations, threads) are NamedTuples: a process with 16,000 fds makes 16,000 of
them, and their field order is the order of the keys in the JSON (fdscope.render.inspect writes
them straight from the tuples). Everything else in the inspect package builds these; findings,
iomodel and the renderers only read them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fdscope.errors import FdscopeError
from fdscope.model import Finding

SCHEMA = "fdscope.inspect/1"
SECTIONS = ("summary", "findings", "fds", "epoll", "io_uring", "threads", "io_model")


class SocketInfo(NamedTuple):
    proto: str
    state: str
    local: str | None
    remote: str | None
    recv_q: int | None
    send_q: int | None

    def to_json(self) -> dict[str, Any]:
        return {"proto": self.proto, "state": self.state, "local": self.local,
                "remote": self.remote, "recv_q": self.recv_q, "send_q": self.send_q}


class FdEntry(NamedTuple):
    fd: int
    type: str
    target: str
    inode: int | None
    flags: tuple[str, ...] | None
    pos: int | None
    socket: SocketInfo | None
    flags_raw: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"fd": self.fd, "type": self.type, "target": self.target, "inode": self.inode,
                "flags": list(self.flags) if self.flags is not None else None, "pos": self.pos,
                "socket": self.socket.to_json() if self.socket is not None else None}


class Registration(NamedTuple):
    tfd: int
    mask: int
    events: tuple[str, ...]
    data: int
    inode: int | None
    sdev: int | None
    status: str  # ok | closed | reused
    open_as: tuple[int, ...]
    verified: bool  # False when the inode cannot tell files apart (shared anon inode, old kernel)

    def to_json(self) -> dict[str, Any]:
        return {"tfd": self.tfd, "mask": self.mask, "events": list(self.events), "data": self.data,
                "inode": self.inode, "sdev": self.sdev, "status": self.status,
                "open_as": list(self.open_as), "verified": self.verified}


class EpollSet(NamedTuple):
    epfd: int
    registrations: tuple[Registration, ...]

    def to_json(self) -> dict[str, Any]:
        return {"epfd": self.epfd, "registrations": [r.to_json() for r in self.registrations]}


class ThreadInfo(NamedTuple):
    tid: int
    name: str
    state: str
    syscall: str | None  # name, "running" (on CPU), "none" (in kernel, not in a syscall), None
    wchan: str | None
    args: dict[str, int]
    syscall_nr: int | None = None
    cpu_percent: float | None = None
    waits: dict[str, int] | None = None  # blocking calls seen across a CPU sample's snapshots
    wait_args: dict[str, int] | None = None  # decoded arguments of the most seen one, last seen
    # times the thread gave up the CPU to wait (voluntary_ctxt_switches) during a CPU sample:
    # 0 for a thread that never blocked, as a busy poll never does
    blocked: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"tid": self.tid, "name": self.name, "state": self.state, "syscall": self.syscall,
                "wchan": self.wchan, "args": dict(self.args), "syscall_nr": self.syscall_nr,
                "cpu_percent": self.cpu_percent, "waits": self.waits,
                "wait_args": self.wait_args, "blocked": self.blocked}


class IoModel(NamedTuple):
    kind: str
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary}


class Cpu(NamedTuple):
    percent: float
    window: float  # seconds the percentage was measured over
    source: str  # "sample" (measured now) or "lifetime" (average since the process started)
    snapshots: int = 0  # thread syscall snapshots taken during a sample
    # bytes the process read and wrote through syscalls during a sample (/proc/PID/io rchar +
    # wchar); None without a sample or when unreadable
    io_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"percent": self.percent, "window": self.window, "source": self.source,
                "snapshots": self.snapshots, "io_bytes": self.io_bytes}


@dataclass
class Summary:
    """The `summary` section: fd counts, the limit, counts by type and socket state."""

    open_fds: int = 0
    highest_fd: int | None = None
    soft_limit: int | None = None
    hard_limit: int | None = None
    by_type: dict[str, int] = field(default_factory=dict)
    socket_states: dict[str, int] = field(default_factory=dict)
    epoll_registrations: int = 0
    threads: int = 0

    @property
    def headroom(self) -> int | None:
        return None if self.soft_limit is None else self.soft_limit - self.open_fds

    @property
    def usage_percent(self) -> float | None:
        if not self.soft_limit:
            return None
        return round(100.0 * self.open_fds / self.soft_limit, 1)

    def to_json(self) -> dict[str, Any]:
        return {"open_fds": self.open_fds, "highest_fd": self.highest_fd,
                "soft_limit": self.soft_limit, "hard_limit": self.hard_limit,
                "headroom": self.headroom, "usage_percent": self.usage_percent,
                "by_type": dict(self.by_type), "socket_states": dict(self.socket_states),
                "epoll_registrations": self.epoll_registrations, "threads": self.threads}


@dataclass
class InspectReport:
    """Everything `fdscope inspect` found about one process; to_json() is the public document."""

    pid: int
    name: str
    cmdline: list[str]
    state: str
    uid: int | None = None
    kernel_thread: bool = False
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    findings: list[Finding] = field(default_factory=list)
    fds: list[FdEntry] = field(default_factory=list)
    epoll: list[EpollSet] = field(default_factory=list)
    io_uring: list[Any] = field(default_factory=list)  # fdscope.inspect.uring.UringRing
    threads: list[ThreadInfo] = field(default_factory=list)
    io_model: IoModel = IoModel("unknown", "not determined")
    cpu: Cpu | None = None
    net_namespace_shared: bool | None = None
    # TcpExt ListenOverflows/ListenDrops of the target's network namespace, and how much each
    # grew during the scan (read again only when an accept queue is full).
    listen_drops: dict[str, int] | None = None
    # Sockets the program has not closed (CLOSE_WAIT, TCP CLOSE), read again a moment later:
    # {"delay_s", "still_open": [fds], "closed": n}; None when not re-checked.
    close_recheck: dict[str, Any] | None = None
    # --peers: the other holders of each pipe and socket (fdscope.host.peers.Peer rows), and
    # None when not asked for (the document then has no "peers" key).
    peers: list[Any] | None = None
    sections: tuple[str, ...] = SECTIONS
    types: tuple[str, ...] | None = None

    def fd_map(self) -> dict[int, FdEntry]:
        return {e.fd: e for e in self.fds}

    def fds_in_state(self, *states: str) -> list[FdEntry]:
        """Socket fds whose state is one of `states`."""
        wanted = frozenset(states)
        return [e for e in self.fds if e.socket is not None and e.socket.state in wanted]

    def fds_with_flags(self) -> list[FdEntry]:
        """Fds whose flags were read (above 4096 fds, only some are: fdscope.inspect.gather)."""
        return [e for e in self.fds if e.flags]

    def listed_fds(self) -> list[FdEntry]:
        """The fds the `fds` section shows (after --type)."""
        if self.types is None:
            return self.fds
        return [e for e in self.fds if e.type in self.types]

    def to_json(self, sections: Collection[str] | None = None, rows: bool = True) -> dict[str, Any]:
        """The public JSON document. rows=False leaves "fds" and "epoll" empty (for renderers
        that format those rows themselves)."""
        shown = self.sections if sections is None else tuple(s for s in SECTIONS if s in sections)
        doc: dict[str, Any] = {
            "schema": SCHEMA, "pid": self.pid, "name": self.name, "cmdline": list(self.cmdline),
            "state": self.state, "uid": self.uid, "kernel_thread": self.kernel_thread,
            "partial": self.partial, "notes": list(self.notes),
            "net_namespace_shared": self.net_namespace_shared,
            "listen_drops": self.listen_drops,
            "close_recheck": self.close_recheck,
        }
        if "summary" in shown:
            doc["summary"] = self.summary.to_json()
        if "findings" in shown:
            doc["findings"] = [f.to_json() for f in self.findings]
        if "fds" in shown:
            doc["fds"] = [e.to_json() for e in self.listed_fds()] if rows else []
        if "epoll" in shown:
            doc["epoll"] = [s.to_json() for s in self.epoll] if rows else []
        if "io_uring" in shown:
            doc["io_uring"] = [r.to_json() for r in self.io_uring]
        if "threads" in shown:
            doc["threads"] = [t.to_json() for t in self.threads]
        if "io_model" in shown:
            doc["io_model"] = self.io_model.to_json()
            doc["cpu"] = self.cpu.to_json() if self.cpu is not None else None
        if self.peers is not None:
            doc["peers"] = [p.to_json() for p in self.peers]
        return doc


def normalize_sections(sections: Collection[str] | None) -> tuple[str, ...]:
    if not sections:
        return SECTIONS
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        raise FdscopeError(f"unknown section {', '.join(bad)} (choose from {', '.join(SECTIONS)})")
    return tuple(s for s in SECTIONS if s in sections)


def normalize_types(types: Collection[str] | None) -> tuple[str, ...] | None:
    if not types:
        return None
    from fdscope.parse.fdlink import FD_TYPES

    bad = sorted(set(types) - set(FD_TYPES))
    if bad:
        raise FdscopeError(f"unknown fd type {', '.join(bad)} (choose from {', '.join(FD_TYPES)})")
    return tuple(t for t in FD_TYPES if t in types)
