"""The host snapshot: its types and its public JSON document (schema fdscope.top/1).

A HostSnapshot is what one scan of the host saw: the host's file handle figures and one
ProcessRow per process. Rows are frozen; growth and flags are filled in by the scan that has a
previous snapshot to compare with. Every JSON field is documented in docs/top.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fdscope.model import Finding
from fdscope.parse.sysctl import FileNr

SCHEMA = "fdscope.top/1"
# Flag codes (a public contract, docs/top.md "Flags").
FLAG_CODES = ("near_limit", "growing", "select_risk", "stale_epoll", "close_wait",
              "backlog_full")
SORT_KEYS = ("used", "fds", "growth", "headroom")


@dataclass(frozen=True)
class HostInfo:
    """Host-wide figures: fs.file-nr (None when unreadable), fs.nr_open, and what the scan
    counted: processes scanned (kernel threads excluded), their fds, how many could not be
    read (permission), how many vanished mid-scan, kernel threads skipped."""

    file_nr: FileNr | None
    nr_open: int | None
    processes: int
    fds_total: int
    denied: int
    vanished: int = 0
    kernel_threads: int = 0
    zombies: int = 0

    def to_json(self) -> dict[str, Any]:
        nr = self.file_nr
        return {
            "file_nr": None if nr is None else
            {"allocated": nr.allocated, "unused": nr.unused, "max": nr.max},
            "nr_open": self.nr_open, "processes": self.processes, "fds_total": self.fds_total,
            "denied": self.denied, "vanished": self.vanished,
            "kernel_threads": self.kernel_threads, "zombies": self.zombies,
        }


@dataclass(frozen=True)
class ProcessRow:
    """One process as the scan saw it.

    fds: open fds (None when unknown: a denied process on a kernel before 6.2, whose
    stat(/proc/PID/fd) has no count). denied: the fd table was not readable (permission), so
    types, highest_fd and flags are unknown (None / empty), never zero. soft/hard: its
    RLIMIT_NOFILE (None: unlimited or unreadable). growth_per_min: fds per minute since the
    previous snapshot (None in the first)."""

    pid: int
    name: str
    user: str
    uid: int | None
    state: str
    starttime: int
    fds: int | None
    soft: int | None
    hard: int | None
    highest_fd: int | None = None
    types: dict[str, int] | None = None
    denied: bool = False
    growth_per_min: float | None = None
    flags: tuple[Finding, ...] = ()

    @property
    def headroom(self) -> int | None:
        if self.soft is None or self.fds is None:
            return None
        return self.soft - self.fds

    @property
    def used(self) -> float | None:
        """Fraction of the soft limit in use (0..1, above 1 when the limit was lowered)."""
        if not self.soft or self.fds is None:
            return None
        return self.fds / self.soft

    def flag(self, code: str) -> Finding | None:
        return next((f for f in self.flags if f.code == code), None)

    def to_json(self) -> dict[str, Any]:
        used = self.used
        return {
            "pid": self.pid, "name": self.name, "user": self.user, "uid": self.uid,
            "state": self.state, "fds": self.fds, "soft": self.soft, "hard": self.hard,
            "headroom": self.headroom, "used": None if used is None else round(used, 4),
            "highest_fd": self.highest_fd,
            "growth_per_min": None if self.growth_per_min is None else
            round(self.growth_per_min, 1),
            "types": None if self.types is None else dict(self.types),
            "denied": self.denied,
            "flags": [{"code": f.code, "level": f.level, "message": f.message}
                      for f in self.flags],
        }


@dataclass(frozen=True)
class HostSnapshot:
    """One scan: when (monotonic and wall clock), the host figures, the rows (in pid order),
    how long the scan took, and notes on what it could not do."""

    monotonic: float
    wall: float
    host: HostInfo
    processes: tuple[ProcessRow, ...]
    elapsed_ms: float
    notes: tuple[str, ...] = field(default=())

    def row(self, pid: int) -> ProcessRow | None:
        return next((r for r in self.processes if r.pid == pid), None)

    def to_json(self, rows: list[ProcessRow] | tuple[ProcessRow, ...] | None = None
                ) -> dict[str, Any]:
        """The public document; `rows` (default: all, in pid order) are the ones listed."""
        listed = self.processes if rows is None else rows
        return {"schema": SCHEMA, "time": round(self.wall, 3), "host": self.host.to_json(),
                "processes": [r.to_json() for r in listed],
                "elapsed_ms": round(self.elapsed_ms, 1), "notes": list(self.notes)}


def sort_rows(rows: list[ProcessRow] | tuple[ProcessRow, ...], key: str) -> list[ProcessRow]:
    """Rows in display order for a sort key (SORT_KEYS): used = fraction of the soft limit,
    then fds; fds; growth per minute; headroom (least first). Unknown values last."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r} (choose from {', '.join(SORT_KEYS)})")

    def value(r: ProcessRow) -> tuple[Any, ...]:
        fds = r.fds if r.fds is not None else -1
        if key == "used":
            return (r.used is None, -(r.used or 0.0), -fds, r.pid)
        if key == "fds":
            return (r.fds is None, -fds, r.pid)
        if key == "growth":
            return (r.growth_per_min is None, -(r.growth_per_min or 0.0), -fds, r.pid)
        return (r.headroom is None, r.headroom if r.headroom is not None else 0, r.pid)

    return sorted(rows, key=value)
