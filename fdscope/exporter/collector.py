"""The exporter's one collector: every scrape scans the host (fdscope.host.scan.Scanner) and
turns the snapshot into metric families; nothing is served from an earlier scrape.

The metric names, types, labels and help texts are METRICS, one table (a public contract,
documented in docs/exporter.md, each with its source). What a scrape reuses from the previous
one is the Scanner's: a process whose start time and fd count did not change keeps the fd
types it had, re-read at the latest after `full_every` seconds (docs/exporter.md, "Cost",
measures both ways); every count, limit, socket state and host figure is read again. Growth
per second is the change of each process's count since the previous scrape (same pid and start
time), summed per group: a process that started or exited in between adds nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from fdscope.errors import FdscopeError
from fdscope.exporter.groups import KINDS, MAX_GROUPS, Group, Grouper, fold, kinds_of, label
from fdscope.exporter.sockets import socket_states
from fdscope.host.model import HostSnapshot, ProcessRow
from fdscope.host.scan import FdTable, Scanner
from fdscope.proc import Proc

# fd tables whose count did not change are re-read at the latest after this many seconds, or
# (unless --full-every is given) after this many intervals between scrapes, if that is longer:
# each scrape then re-reads about 1/15 of the tables at any scrape interval.
FULL_EVERY = 300.0
AUTO_SCRAPES = 20


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # gauge | counter
    labels: tuple[str, ...]
    help: str


G = ("group",)
P = ("pid", "name", "group")
METRICS = {m.name: m for m in (
    MetricDef("fdscope_host_file_handles_allocated", "gauge", (),
              "Open file handles on the host (fs.file-nr, first field)."),
    MetricDef("fdscope_host_file_handles_max", "gauge", (),
              "System-wide limit on open file handles (fs.file-max)."),
    MetricDef("fdscope_host_nr_open", "gauge", (),
              "Ceiling of any process's RLIMIT_NOFILE (fs.nr_open)."),
    MetricDef("fdscope_host_processes", "gauge", (),
              "User processes scanned (kernel threads and zombies excluded)."),
    MetricDef("fdscope_host_open_fds", "gauge", (),
              "Open fds of all scanned processes whose count is known."),
    MetricDef("fdscope_host_processes_denied", "gauge", (),
              "Processes whose fd table could not be read (permission); their kinds, "
              "sockets and findings are unknown."),
    MetricDef("fdscope_group_processes", "gauge", G, "Processes in the group."),
    MetricDef("fdscope_group_open_fds", "gauge", G, "Open fds of the group's processes."),
    MetricDef("fdscope_group_open_fds_by_kind", "gauge", G + ("kind",),
              "Open fds of the group's readable processes by kind "
              "(socket, pipe, file, epoll, eventfd, other)."),
    MetricDef("fdscope_group_sockets_by_state", "gauge", G + ("protocol", "state"),
              "Socket fds of the group's readable processes by protocol and state."),
    MetricDef("fdscope_group_worst_fd_used_ratio", "gauge", G,
              "Highest fraction of its soft RLIMIT_NOFILE in use by any process of the group."),
    MetricDef("fdscope_group_min_headroom_fds", "gauge", G,
              "Fewest fds any process of the group can still open before its soft "
              "RLIMIT_NOFILE (EMFILE)."),
    MetricDef("fdscope_group_fd_growth_per_second", "gauge", G,
              "Change of the group's open fds per second since the previous scrape, over "
              "processes present in both."),
    MetricDef("fdscope_group_select_risk", "gauge", G,
              "Processes of the group that wait in select() while holding an fd at or "
              "above FD_SETSIZE (1024)."),
    MetricDef("fdscope_group_stale_epoll_registrations", "gauge", G,
              "Epoll registrations whose fd is closed or now another file, in processes of "
              "the group where inspect's rules confirm one."),
    MetricDef("fdscope_process_open_fds", "gauge", P,
              "Open fds of one of the --top-pids processes most used against their limit."),
    MetricDef("fdscope_process_fd_soft_limit", "gauge", P,
              "Soft RLIMIT_NOFILE of one of the --top-pids processes (absent: unlimited)."),
    MetricDef("fdscope_process_fd_used_ratio", "gauge", P,
              "Fraction of its soft RLIMIT_NOFILE in use by one of the --top-pids processes."),
    MetricDef("fdscope_scrape_duration_seconds", "gauge", (),
              "Wall time this scrape took to scan the host and build its metrics."),
    MetricDef("fdscope_scrape_cpu_seconds", "gauge", (),
              "CPU time (user and system, all threads) this scrape took."),
    MetricDef("fdscope_scrape_fd_tables_read", "gauge", (),
              "fd tables read in this scrape; the others kept their kinds from an earlier one "
              "(same count, read less than --full-every seconds ago)."),
    MetricDef("fdscope_scrape_groups_folded", "gauge", (),
              "Groups beyond --max-groups added into group=\"other\" in this scrape."),
    MetricDef("fdscope_scrape_errors_total", "counter", (),
              "Scrapes that failed, wholly or in part (a socket table unreadable)."),
)}


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    m = METRICS[name]
    if m.kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), m.help, labels=m.labels)
    return GaugeMetricFamily(name, m.help, labels=m.labels)


def _order(row: ProcessRow) -> tuple[Any, ...]:
    fds = row.fds if row.fds is not None else -1
    used = row.used
    return (used is None, -(used or 0.0), -fds, row.pid)


class FdCollector:
    """A prometheus_client collector: `collect()` scans and returns the families. Scrapes are
    serialised (one Scanner, one previous scrape); `exposition()` is the text format."""

    def __init__(self, proc: Proc | None = None, *, grouper: Grouper | None = None,
                 max_groups: int = MAX_GROUPS, top_pids: int = 0,
                 full_every: float | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.proc = proc or Proc()
        self.auto = full_every is None  # FULL_EVERY or AUTO_SCRAPES intervals
        self.scanner = Scanner(self.proc,
                               full_every=FULL_EVERY if full_every is None else full_every)
        self.grouper = grouper or Grouper(self.proc)
        self.max_groups = max_groups
        self.top_pids = top_pids
        self.errors = 0
        self.log = log or _stderr
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._prev: tuple[float, dict[int, tuple[int, int]]] | None = None
        self._derived: dict[int, tuple[FdTable, Counter[str], list[int]]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration: that would be a scan

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._collect())

    def exposition(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    def _collect(self) -> list[Metric]:
        t0, c0 = time.perf_counter(), time.process_time()
        out: list[Metric] = []
        problems: list[str] = []
        if self.auto and self._prev is not None:
            gap = self.scanner.clock() - self._prev[0]  # type: ignore[operator]
            self.scanner.full_every = max(FULL_EVERY, AUTO_SCRAPES * gap)
        try:
            snap = self.scanner.scan()
            out = self._families(snap, problems)
        except FdscopeError as err:
            problems.append(str(err))
            out = []
        except Exception as err:  # noqa: BLE001 - a bug must not take the endpoint down
            problems.append(f"internal error: {type(err).__name__}: {err}")
            out = []
        if problems:
            self.errors += 1
            msg = "; ".join(problems)
            if msg != self._last_error:
                self.log(f"scrape: {msg}")
            self._last_error = msg
        else:
            self._last_error = None
        for name, value in (("fdscope_scrape_duration_seconds", time.perf_counter() - t0),
                            ("fdscope_scrape_cpu_seconds", time.process_time() - c0)):
            f = _family(name)
            f.add_metric([], value)
            out.append(f)
        f = _family("fdscope_scrape_errors_total")
        f.add_metric([], self.errors)
        out.append(f)
        return out

    def _families(self, snap: HostSnapshot, problems: list[str]) -> list[Metric]:
        tables = self.scanner.tables
        # what each fd table gives, derived again only from a table read anew
        derived: dict[int, tuple[FdTable, Counter[str], list[int]]] = {}
        for pid, t in tables.items():
            d = self._derived.get(pid)
            if d is None or d[0] is not t:
                d = (t, kinds_of(t.types), t.sockets)
            derived[pid] = d
        self._derived = derived
        socks, errs = socket_states(self.proc, {pid: d[2] for pid, d in derived.items()
                                                if d[2]})
        problems.extend(errs)
        prev = self._prev
        dt = snap.monotonic - prev[0] if prev is not None else 0.0
        before = prev[1] if prev is not None and dt > 0 else None
        now: dict[int, tuple[int, int]] = {}
        groups: dict[str, Group] = {}
        group_of: dict[int, str] = {}
        for row in snap.processes:
            name = group_of[row.pid] = self.grouper.group_of(row.pid, row.name)
            g = groups.get(name)
            if g is None:
                g = groups[name] = Group(growth=0.0 if before is not None else None)
            g.processes += 1
            if row.fds is not None:
                g.open_fds += row.fds
                now[row.pid] = (row.starttime, row.fds)
                if before is not None:
                    was = before.get(row.pid)
                    if was is not None and was[0] == row.starttime:
                        g.growth = (g.growth or 0.0) + (row.fds - was[1]) / dt
            d = derived.get(row.pid)
            if d is not None:
                g.kinds = d[1] + g.kinds if g.kinds is not None else d[1].copy()
            used, headroom = row.used, row.headroom
            if used is not None:
                g.worst_ratio = used if g.worst_ratio is None else max(g.worst_ratio, used)
            if headroom is not None:
                g.min_headroom = headroom if g.min_headroom is None else \
                    min(g.min_headroom, headroom)
            if row.flag("select_risk") is not None:
                g.select_risk += 1
            if row.flag("stale_epoll") is not None:
                table = tables.get(row.pid)
                g.stale_epoll += max(1, len(table.stale_epoll) if table is not None else 0)
            s = socks.get(row.pid)
            if s:
                g.sockets.update(s)
        self._prev = (snap.monotonic, now)
        kept, folded = fold(groups, self.max_groups)
        out = self._host(snap)
        out += self._groups(kept)
        if self.top_pids:
            out += self._processes(snap, group_of)
        read = _family("fdscope_scrape_fd_tables_read")
        read.add_metric([], sum(1 for t in tables.values() if t.read_at == snap.monotonic))
        gf = _family("fdscope_scrape_groups_folded")
        gf.add_metric([], folded)
        return out + [read, gf]

    def _host(self, snap: HostSnapshot) -> list[Metric]:
        h = snap.host
        values = {
            "fdscope_host_file_handles_allocated": h.file_nr.allocated if h.file_nr else None,
            "fdscope_host_file_handles_max": h.file_nr.max if h.file_nr else None,
            "fdscope_host_nr_open": h.nr_open,
            "fdscope_host_processes": h.processes,
            "fdscope_host_open_fds": h.fds_total,
            "fdscope_host_processes_denied": h.denied,
        }
        out: list[Metric] = []
        for name, value in values.items():
            if value is None:
                continue  # unreadable: absent rather than a made-up 0
            f = _family(name)
            f.add_metric([], value)
            out.append(f)
        return out

    def _groups(self, groups: dict[str, Group]) -> list[Metric]:
        fams = {n: _family(n) for n in METRICS if n.startswith("fdscope_group_")}
        for name in sorted(groups):
            g = groups[name]
            fams["fdscope_group_processes"].add_metric([name], g.processes)
            fams["fdscope_group_open_fds"].add_metric([name], g.open_fds)
            if g.kinds is not None:
                for kind in KINDS:
                    fams["fdscope_group_open_fds_by_kind"].add_metric([name, kind],
                                                                      g.kinds[kind])
            for (proto, state), n in sorted(g.sockets.items()):
                fams["fdscope_group_sockets_by_state"].add_metric([name, proto, state], n)
            if g.worst_ratio is not None:
                fams["fdscope_group_worst_fd_used_ratio"].add_metric([name], g.worst_ratio)
            if g.min_headroom is not None:
                fams["fdscope_group_min_headroom_fds"].add_metric([name], g.min_headroom)
            if g.growth is not None:
                fams["fdscope_group_fd_growth_per_second"].add_metric([name], g.growth)
            fams["fdscope_group_select_risk"].add_metric([name], g.select_risk)
            fams["fdscope_group_stale_epoll_registrations"].add_metric([name], g.stale_epoll)
        return list(fams.values())

    def _processes(self, snap: HostSnapshot, group_of: dict[int, str]) -> list[Metric]:
        fams = {n: _family(n) for n in METRICS if n.startswith("fdscope_process_")}
        rows = [r for r in snap.processes if r.fds is not None]
        for row in sorted(rows, key=_order)[:self.top_pids]:
            labels = [str(row.pid), label(row.name), group_of[row.pid]]
            fams["fdscope_process_open_fds"].add_metric(labels, row.fds)  # type: ignore[arg-type]
            if row.soft is not None:
                fams["fdscope_process_fd_soft_limit"].add_metric(labels, row.soft)
            if row.used is not None:
                fams["fdscope_process_fd_used_ratio"].add_metric(labels, row.used)
        return list(fams.values())


def _stderr(message: str) -> None:
    from fdscope.render.escape import escape

    try:
        sys.stderr.write(f"fdscope exporter: {escape(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
