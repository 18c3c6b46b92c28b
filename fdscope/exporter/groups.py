"""Process groups: which group a process belongs to (--group-by), what a group adds up to, and
the cap that keeps the number of groups (and so of series) bounded.

A group's figures are sums (processes, fds, fds by kind, sockets by state, growth, select and
stale-epoll counts), a maximum (the worst fraction of a soft limit in use) and a minimum (the
least headroom), so folding groups into `other` is the same aggregation again: `other` says
what the groups beyond the cap hold together, and an alert on it still fires.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fdscope.errors import FdscopeError
from fdscope.parse.cgroup import systemd_unit
from fdscope.proc import Proc
from fdscope.render.escape import escape

GROUP_BY = ("name", "cmdline-regex", "systemd-unit")
OTHER = "other"
# Default cap on the number of groups exported (besides `other`).
MAX_GROUPS = 100
# A group at or above this fraction of a soft limit is kept ahead of bigger fd holders.
AT_RISK_RATIO = 0.5
# fdscope.parse.fdlink.FD_TYPES -> the `kind` label; everything not named here is `other`.
KIND_OF = {"socket": "socket", "pipe": "pipe", "file": "file", "dir": "file", "chr": "file",
           "blk": "file", "memfd": "file", "epoll": "epoll", "eventfd": "eventfd"}
KINDS = ("socket", "pipe", "file", "epoll", "eventfd", "other")
# When the cgroup names no unit (unreadable, not systemd's tree).
NO_UNIT = "-"


def label(text: str) -> str:
    """A label value made of target text: control characters, bytes that are not UTF-8 and
    the other characters text output escapes become visible escapes (fdscope.render.escape),
    so every value is valid UTF-8 and one line."""
    return escape(text)


class Grouper:
    """Names each process's group: its name (comm), the first --group-regex that matches its
    command line (the named group `group`, else the first group, else the whole match; no
    match: its name), or its systemd unit (from /proc/PID/cgroup)."""

    def __init__(self, proc: Proc, by: str = "name",
                 regexes: Sequence[re.Pattern[str]] = ()) -> None:
        if by not in GROUP_BY:
            raise ValueError(f"unknown grouping {by!r} (choose from {', '.join(GROUP_BY)})")
        self.proc = proc
        self.by = by
        self.regexes = tuple(regexes)

    def group_of(self, pid: int, name: str) -> str:
        if self.by == "name":
            return label(name)
        if self.by == "systemd-unit":
            try:
                unit = systemd_unit(self.proc.read_text(pid, "cgroup", pid=pid))
            except FdscopeError:
                unit = None
            return label(unit or NO_UNIT)
        try:
            raw = self.proc.read_bytes(pid, "cmdline", pid=pid)
        except FdscopeError:
            raw = b""
        cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "surrogateescape")
        for rx in self.regexes:
            m = rx.search(cmdline)
            if m is None:
                continue
            if "group" in rx.groupindex:
                got = m.group("group")
            elif rx.groups:
                got = m.group(1)
            else:
                got = m.group(0)
            if got:
                return label(got)
        return label(name)


@dataclass
class Group:
    """What one group adds up to (module docstring). None: not known for any of its
    processes (no limit, no readable fd table, no previous scrape)."""

    processes: int = 0
    open_fds: int = 0
    kinds: Counter[str] | None = None
    sockets: Counter[tuple[str, str]] = field(default_factory=Counter)
    worst_ratio: float | None = None
    min_headroom: int | None = None
    growth: float | None = None
    select_risk: int = 0
    stale_epoll: int = 0

    def add(self, other: Group) -> None:
        self.processes += other.processes
        self.open_fds += other.open_fds
        if other.kinds is not None:
            self.kinds = (self.kinds or Counter()) + other.kinds
            for k in KINDS:  # Counter addition drops zeros; every kind stays a series
                self.kinds.setdefault(k, 0)
        self.sockets.update(other.sockets)
        self.worst_ratio = _pick(max, self.worst_ratio, other.worst_ratio)
        self.min_headroom = _pick(min, self.min_headroom, other.min_headroom)
        if other.growth is not None:
            self.growth = (self.growth or 0.0) + other.growth
        self.select_risk += other.select_risk
        self.stale_epoll += other.stale_epoll

    @property
    def at_risk(self) -> bool:
        return bool(self.select_risk or self.stale_epoll
                    or (self.worst_ratio is not None and self.worst_ratio >= AT_RISK_RATIO))


def _pick(f: object, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)  # type: ignore[operator,no-any-return]


def kinds_of(types: dict[str, int]) -> Counter[str]:
    """fds by kind label from fds by fdscope type (every kind present, zeros included)."""
    out: Counter[str] = Counter({k: 0 for k in KINDS})
    for t, n in types.items():
        out[KIND_OF.get(t, "other")] += n
    return out


def fold(groups: dict[str, Group], max_groups: int) -> tuple[dict[str, Group], int]:
    """At most `max_groups` groups plus `other`: groups at risk first (a limit half used, a
    select or stale-epoll finding), then the biggest fd holders, then by name; the rest are
    added into `other` (a real group named `other` always is). Returns (groups, how many were
    folded)."""
    ranked = sorted((g for g in groups if g != OTHER),
                    key=lambda g: (not groups[g].at_risk, -groups[g].open_fds, g))
    kept = {g: groups[g] for g in ranked[:max_groups]}
    rest: Iterable[str] = ranked[max_groups:]
    folded = 0
    other = Group()
    if OTHER in groups:
        other.add(groups[OTHER])
    for g in rest:
        other.add(groups[g])
        folded += 1
    if other.processes:
        kept[OTHER] = other
    return kept, folded
