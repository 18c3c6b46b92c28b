"""One scan of the host: every process's fd count, RLIMIT_NOFILE, highest fd, fds by type and
flags, read through fdscope.proc (the only reader of /proc).

Per process the scan reads stat (name, state, kernel thread), the uid of /proc/PID, the fd
count from stat(/proc/PID/fd).st_size (fs/proc/fd.c proc_fd_getattr, Linux 6.2+; it needs no
ptrace access, so a process whose fds are denied still has a count) and RLIMIT_NOFILE
(prlimit(2), else /proc/PID/limits). Processes the filter selects also have their fd links
read and sorted (fdscope.host.tables: link_kinds, then fdscope.parse.fdlink.classify_fd for
each distinct other link; inspect classifies the same way). Process enumeration is a
listing of the proc root: psutil.process_iter() reads /proc/PID/status as well and took twice
as long (docs/top.md, "Cost").

A Scanner keeps what it read: on the next scan a process whose start time and fd count did
not change keeps its types, limit, owner and epoll check (re-read at the latest after
`full_every` seconds), which is what makes a live refresh cheap. select() sleepers are looked
for on every scan, CLOSE_WAIT sockets and full listeners every SOCKETS_EVERY seconds.

Races: a process that exits mid-scan is counted in `vanished` and left out; a permission error
on the fd table marks the row denied (types unknown, never 0).
"""

from __future__ import annotations

import os
import pwd
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import compress
from typing import Any

from fdscope import speedups
from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ParseError, ProcGone
from fdscope.host import flags as host_flags
from fdscope.host.model import HostInfo, HostSnapshot, ProcessRow
from fdscope.host.tables import READERS, RawTable, inodes_by_fd, read_table, where
from fdscope.inspect import fds as fds_mod
from fdscope.model import Finding
from fdscope.parse.fdkinds import KIND_ANON, KIND_OTHER, KIND_PATH, KIND_PIPE, KIND_SOCKET
from fdscope.parse.fdlink import classify_fd
from fdscope.parse.limits import parse_limits
from fdscope.parse.sysctl import FileNr, parse_file_nr, parse_int
from fdscope.parse.task import parse_stat
from fdscope.proc import DEFAULT_ROOT, Proc

# A Scanner re-reads an fd table (with RLIMIT_NOFILE and the owner) when its count changed, else
# after 50-100% of this many seconds (by pid, so that the re-reads spread over the refreshes).
FULL_EVERY = 120.0
# Growth history kept per process (refreshes).
HISTORY = 8
# Fd tables are read (and inspect run) on READERS threads when at least this many are due.
PARALLEL_FROM = 16
TCP_CLOSE_WAIT, TCP_LISTEN = 8, 10  # include/net/tcp_states.h
# A Scanner asks sock_diag for CLOSE_WAIT sockets and full listeners at most this often
# (seconds): each dump walks every socket of the namespace in the kernel.
SOCKETS_EVERY = 10.0


@dataclass(frozen=True)
class ProcessFilter:
    """Which processes get a row: pids, uids, a regex searched in the name (all: None)."""

    pids: frozenset[int] | None = None
    uids: frozenset[int] | None = None
    name: re.Pattern[str] | None = None

    def matches(self, pid: int, name: str, uid: int | None) -> bool:
        return ((self.pids is None or pid in self.pids)
                and (self.uids is None or uid in self.uids)
                and (self.name is None or self.name.search(name) is not None))


@dataclass
class FdTable:
    """What the scan keeps of one process's fd table: counts by type, highest fd, its epoll
    fds, its sockets' inodes, (for the peer index) the whole table, when it was read, and the
    epoll registrations that may be stale."""

    count: int
    types: dict[str, int]
    highest: int | None
    epfds: list[int]
    sockets: list[int]  # the inode of each socket fd
    table: fds_mod.Table | None  # kept for the peer index only
    read_at: float
    stale_epoll: tuple[int, ...] = ()  # registrations that may be stale (flags.epoll_suspects)
    socket_inodes: frozenset[int] = frozenset()


class _Seen:
    """A Scanner's memory of one process (pid and start time)."""

    __slots__ = ("starttime", "table", "history", "suspects", "flags", "limits", "netns",
                 "uid")

    def __init__(self, starttime: int) -> None:
        self.starttime = starttime
        self.limits: tuple[int | None, int | None] | None = None
        self.netns: int | None | bool = False  # not read yet
        self.uid: int | None = None
        self.table: FdTable | None = None
        self.history: list[tuple[float, int]] = []
        self.suspects: tuple[object, ...] | None = None
        self.flags: tuple[Finding, ...] = ()


class Scanner:
    """Scans the host again and again, re-reading only what changed (see module docstring).

    proc: the proc root (default /proc). select: which processes get rows (the host totals
    count every process). flags: compute flags (False: counts and types only). index: keep
    every fd table's types and inodes for the peer index (fdscope.host.peers). ahead: fd
    table reads under way for the first scan (fdscope.host.readahead.take())."""

    def __init__(self, proc: Proc | None = None, *, select: ProcessFilter | None = None,
                 flags: bool = True, index: bool = False, full_every: float = FULL_EVERY,
                 clock: Callable[[], float] = time.monotonic,
                 ahead: dict[int, Any] | None = None) -> None:
        self.proc = proc or Proc()
        self.select = select or ProcessFilter()
        self.want_flags = flags
        self.index = index
        self.full_every = full_every
        self.clock = clock
        self.seen: dict[int, _Seen] = {}
        self.previous: HostSnapshot | None = None
        self.tables: dict[int, FdTable] = {}  # of the last scan, readable processes
        self._users: dict[int, str] = {}
        self._counts = self.proc.root == DEFAULT_ROOT and _kernel_counts()
        self.own_netns: int | None = _netns(self.proc, "self")
        self._sockets: _SocketStates | None = None
        self._ahead = ahead

    def user(self, uid: int | None) -> str:
        if uid is None:
            return "?"
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                name = str(uid)
            self._users[uid] = name
        return name

    def scan(self) -> HostSnapshot:
        proc = self.proc
        t0 = time.perf_counter()
        now = self.clock()
        wall = time.time()
        notes: list[str] = []
        file_nr, nr_open = _host(proc, notes)
        tally: Counter[str] = Counter()  # processes, fds, vanished, kthreads, zombies, denied
        readers = _Readers(self._read_raw, self._ahead)
        self._ahead = None
        try:
            todo = self._processes(proc.listdir(), now, readers, tally)
            # Results in order, each as soon as it is read: the main thread classifies one
            # table while the readers read the next ones.
            rows, tables, seen = self._rows(todo, set(readers.pids), readers.results(), now,
                                            tally)
            if self.want_flags:
                rows = self._flags(rows, tables, seen, notes, readers.pool)
        finally:
            readers.close()
        processes, denied = tally["processes"], tally["denied"]
        self.seen = seen
        self.tables = tables
        host = HostInfo(file_nr, nr_open, processes, tally["fds"], denied, tally["vanished"],
                        tally["kthreads"], tally["zombies"])
        if denied:
            notes.append(f"{denied} process(es) denied: their fd tables need ptrace read "
                         "access (run as their owner or as root); their counts come from "
                         "stat(/proc/PID/fd)" if self._counts else
                         f"{denied} process(es) denied: their fd tables need ptrace read "
                         "access (run as their owner or as root)")
        snap = HostSnapshot(now, wall, host, tuple(rows), (time.perf_counter() - t0) * 1000.0,
                            tuple(notes))
        self.previous = snap
        return snap

    def _processes(self, names: list[str], now: float, readers: _Readers,
                   tally: Counter[str]) -> list[Any]:
        """Per selected process of the proc root's listing `names`: (pid, task, uid, fd count,
        soft and hard limit, memory); its fd table handed to `readers` when it is due. The
        counts of every process go to `tally`."""
        proc = self.proc
        todo: list[tuple[int, object, int | None, int | None, int | None, int | None,
                         _Seen]] = []
        for entry in names:
            if not (entry.isascii() and entry.isdigit()):
                continue
            pid = int(entry)
            try:
                task = parse_stat(proc.read_text(pid, "stat", pid=pid))
            except (NoSuchProcess, ProcGone):
                tally["vanished"] += 1
                continue
            except (AccessDenied, ParseError):
                continue
            if task.is_kernel_thread:
                tally["kthreads"] += 1
                continue
            if task.state in ("Z", "X"):
                tally["zombies"] += 1
                continue
            mem = self.seen.get(pid)
            if mem is not None and mem.starttime != task.starttime:
                mem = None
            try:
                count = proc.stat(pid, "fd", pid=pid).st_size if self._counts else None
                # The owner is read again with the fd table (when the count changes).
                uid: int | None = mem.uid if mem is not None and mem.table is not None \
                    and count is not None and count == mem.table.count else \
                    proc.stat(pid, pid=pid).st_uid
            except (NoSuchProcess, ProcGone):
                tally["vanished"] += 1
                continue
            except AccessDenied:
                uid, count = None, None
            tally["processes"] += 1
            if not self.select.matches(pid, task.comm, uid):
                if count is not None:
                    tally["fds"] += count
                continue
            if mem is None:
                mem = _Seen(task.starttime)
            mem.uid = uid
            table = mem.table
            if (table is None or count is None or table.count != count
                    or now - table.read_at >= self.full_every * (0.5 + (pid % 16) / 32)):
                readers.add(pid, count)
                mem.limits = _nofile(proc, pid)
            elif mem.limits is None:
                mem.limits = _nofile(proc, pid)
            soft, hard = mem.limits
            todo.append((pid, task, uid, count, soft, hard, mem))
        return todo

    def _rows(self, todo: list[Any], reading: set[int],
              results: Iterator[RawTable | FdscopeError], now: float, tally: Counter[str]
              ) -> tuple[list[ProcessRow], dict[int, FdTable], dict[int, _Seen]]:
        """The rows of the selected processes, their tables and memories; those that exited
        meanwhile, were denied, and the fds counted go to `tally`."""
        rows: list[ProcessRow] = []
        tables: dict[int, FdTable] = {}
        seen: dict[int, _Seen] = {}
        for pid, task, uid, count, soft, hard, mem in todo:
            got = next(results) if pid in reading else None
            if got is None:
                table = mem.table
            elif isinstance(got, AccessDenied):
                table = None
            elif isinstance(got, FdscopeError):  # exited meanwhile
                tally["processes"] -= 1
                tally["vanished"] += 1
                continue
            else:
                table = self._table(got, now)
            seen[pid] = mem
            mem.table = table
            name, state, starttime = task.comm, task.state, task.starttime
            if table is None:
                tally["denied"] += 1
                if count is not None:
                    tally["fds"] += count
                rows.append(ProcessRow(pid, name, self.user(uid), uid, state, starttime, count,
                                       soft, hard, denied=True))
                continue
            tables[pid] = table
            count = table.count
            tally["fds"] += count
            mem.history = (mem.history + [(now, count)])[-HISTORY:]
            rows.append(ProcessRow(pid, name, self.user(uid), uid, state, starttime, count, soft,
                                   hard, table.highest, dict(table.types),
                                   growth_per_min=_growth(mem.history)))
        return rows, tables, seen

    def _read_raw(self, pid: int) -> RawTable | FdscopeError:
        return read_table(self.proc, pid)

    def _table(self, raw: RawTable, now: float) -> FdTable:
        fd_list, links, kinds = raw.fds, raw.links, raw.kinds
        types: Counter[str] = Counter()
        for kind, typ in ((KIND_SOCKET, "socket"), (KIND_PIPE, "pipe")):
            if n := kinds.count(kind):
                types[typ] = n
        # every other text once, however many fds show it (anon_inode classes, paths)
        for link, n in Counter(compress(links, where(kinds, KIND_PATH, KIND_ANON,
                                                      KIND_OTHER))).items():
            st = raw.path_stats.get(link)
            types[classify_fd(link, st[0] if st is not None else None).type] += n
        sockets = list(compress(raw.inodes, where(kinds, KIND_SOCKET)))
        epoll_texts = raw.epoll
        stale = host_flags.epoll_suspects(epoll_texts, inodes_by_fd(raw)) if epoll_texts else ()
        table = None
        if self.index:
            stats = {fd: raw.path_stats[link] for fd, link in
                     compress(zip(fd_list, links, strict=True), where(kinds, KIND_PATH))
                     if link in raw.path_stats}
            table = fds_mod.classify(fd_list, links, stats)
        return FdTable(len(fd_list), dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
                       fd_list[-1] if fd_list else None, sorted(epoll_texts), sockets, table, now,
                       stale, frozenset(sockets))

    def _flags(self, rows: list[ProcessRow], tables: dict[int, FdTable],
               seen: dict[int, _Seen], notes: list[str], pool: Any) -> list[ProcessRow]:
        proc = self.proc
        sockets = self._sockets
        if sockets is None or self.clock() - sockets.at >= SOCKETS_EVERY:
            sockets = self._sockets = _SocketStates(proc, self.own_netns, self.clock())
        notes.extend(sockets.notes)
        again: list[int] = []  # suspects changed: inspect decides anew
        for row in rows:
            mem = seen.get(row.pid)
            table = tables.get(row.pid)
            if mem is None or table is None:
                continue
            suspects = self._suspects(row.pid, table, sockets, mem)
            if not suspects:
                mem.flags = ()
            elif suspects != mem.suspects:
                again.append(row.pid)
            mem.suspects = suspects
        inspect = partial(host_flags.from_inspect, proc=proc)
        found = pool.map(inspect, again) if pool is not None and len(again) > 1 else \
            map(inspect, again)
        for pid, flags_of in zip(again, found, strict=True):
            seen[pid].flags = flags_of if flags_of is not None else ()
        out = []
        for row in rows:
            flags: list[Finding] = []
            f = host_flags.near_limit(row.fds, row.soft)
            if f is not None:
                flags.append(f)
            mem = seen.get(row.pid)
            if mem is not None and row.pid in tables:
                f = host_flags.growing(mem.history, row.soft)
                if f is not None:
                    flags.append(f)
                flags.extend(mem.flags)
            out.append(row if not flags else _with_flags(row, tuple(flags)))
        return out

    def _suspects(self, pid: int, table: FdTable, sockets: _SocketStates, mem: _Seen
                  ) -> tuple[object, ...]:
        """What in pid's fds may be a finding; inspect runs again when this changes."""
        proc = self.proc
        out: list[object] = []
        if table.stale_epoll:
            out.append(("epoll", table.stale_epoll))
        if table.sockets:
            if mem.netns is False:
                mem.netns = _netns(proc, pid)
            cw, full = sockets.of(pid, mem.netns, table.socket_inodes)
            if cw:
                out.append(("close_wait", cw))
            if full:
                out.append(("backlog_full", full))
        if host_flags.suspicious_fd_limit(table.highest) and host_flags.select_suspect(proc, pid):
            out.append(("select", table.highest))
        return tuple(out)


class _SocketStates:
    """CLOSE_WAIT sockets and full listeners, per network namespace: fdscope's own from
    sock_diag (the kernel filters by state), another one from the TCP tables of one of its
    processes (its listeners' backlog is unknown there: sock_diag answers for fdscope's own
    namespace only)."""

    def __init__(self, proc: Proc, own: int | None, at: float) -> None:
        self.proc = proc
        self.own = own
        self.at = at
        self.notes: list[str] = []
        self.by_ns: dict[int | None, tuple[frozenset[int], frozenset[int]]] = {}

    def of(self, pid: int, ns: int | None | bool, inodes: frozenset[int]) -> tuple[int, int]:
        """(sockets of `inodes` in CLOSE_WAIT, listeners of them with a full accept queue);
        ns: pid's network namespace (None: unreadable)."""
        ns = None if ns is False else ns
        states = self.by_ns.get(ns)
        if states is None:
            states = self.by_ns[ns] = self._read(ns, pid)
        return len(inodes & states[0]), len(inodes & states[1])

    def _read(self, ns: int | None, pid: int) -> tuple[frozenset[int], frozenset[int]]:
        if ns is not None and ns == self.own:
            from fdscope import netdiag

            try:
                socks = netdiag.inet_sockets(1 << TCP_CLOSE_WAIT | 1 << TCP_LISTEN)
                unix = netdiag.unix_listen_queues()
            except OSError as err:
                self.notes.append(f"sock_diag failed ({err}): close_wait and backlog_full "
                                  "not checked")
                return frozenset(), frozenset()
            cw = frozenset(ino for ino, (st, _rq, _wq) in socks.items() if st == TCP_CLOSE_WAIT)
            full = frozenset(ino for ino, (st, rq, wq) in socks.items()
                             if st == TCP_LISTEN and rq > wq)
            return cw, full | frozenset(ino for ino, (rq, wq) in unix.items() if rq > wq)

        cw_set: set[int] = set()
        try:
            texts, _gone = self.proc.read_many(pid, "net", names=["tcp", "tcp6"], pid=pid)
        except FdscopeError:
            return frozenset(), frozenset()
        for table, text in texts.items():
            try:
                rows = speedups.backend.net_rows(table, text, None)
            except ParseError:
                continue
            cw_set.update(r[0] for r in rows if r[2] == "CLOSE_WAIT")
        return frozenset(cw_set), frozenset()


class _Readers:
    """Reads the fd tables a scan finds due, in the order they are added: on the scan's
    thread up to PARALLEL_FROM tables, else on READERS threads that start once that many are
    due, while the scan goes on listing processes. `ahead`: reads already under way (pid ->
    future, fdscope.host.readahead); one stands when the fd count it read is the count the
    scan saw, else the table is read again."""

    def __init__(self, read: Callable[[int], RawTable | FdscopeError],
                 ahead: dict[int, Any] | None = None) -> None:
        self.read = read
        self.ahead = ahead or {}
        # per pid added: (pid, the future of its read or None to read it in turn, the fd count
        # a read-ahead must show or None)
        self.items: list[tuple[int, Any, int | None]] = []
        self.pool: Any = None
        self.own = 0  # reads of the scan's own

    @property
    def pids(self) -> list[int]:
        return [pid for pid, _future, _count in self.items]

    def add(self, pid: int, count: int | None) -> None:
        early = self.ahead.pop(pid, None)
        if early is not None:
            self.items.append((pid, early, count))
            return
        self.own += 1
        if self.pool is None and self.own >= PARALLEL_FROM:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=READERS)
            self.items = [(p, f if f is not None else self.pool.submit(self.read, p), c)
                          for p, f, c in self.items]
        self.items.append((pid, self.pool.submit(self.read, pid) if self.pool else None, None))

    def results(self) -> Iterator[RawTable | FdscopeError]:
        """The tables in the order of add()."""
        for pid, future, count in self.items:
            if future is None:
                yield self.read(pid)
                continue
            got = future.result()
            if count is not None and isinstance(got, tuple) and len(got.fds) != count:
                got = self.read(pid)  # a read-ahead from before the count changed
            yield got

    def close(self) -> None:
        for early in self.ahead.values():
            early.cancel()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _with_flags(row: ProcessRow, flags: tuple[Finding, ...]) -> ProcessRow:
    from dataclasses import replace

    order = {"crit": 0, "warn": 1, "info": 2}
    return replace(row, flags=tuple(sorted(flags, key=lambda f: order[f.level])))


def _growth(history: list[tuple[float, int]]) -> float | None:
    """fds per minute between the last two scans of a process."""
    if len(history) < 2:
        return None
    (t0, n0), (t1, n1) = history[-2], history[-1]
    return (n1 - n0) * 60.0 / (t1 - t0) if t1 > t0 else None


def _nofile(proc: Proc, pid: int) -> tuple[int | None, int | None]:
    """RLIMIT_NOFILE of pid (None: unlimited). On the live /proc, prlimit(2) with no new limit
    reads it in one syscall (kernel/sys.c: allowed with the target's credentials or
    CAP_SYS_RESOURCE, and it changes nothing); else, or when refused, /proc/PID/limits (world
    readable): its header and "Max open files" row only go through the parser
    (fdscope.parse.limits), the other 15 rows are not needed here."""
    if proc.root == DEFAULT_ROOT:
        try:
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        except OSError:
            pass
        else:
            inf = resource.RLIM_INFINITY
            return (None if soft == inf else soft), (None if hard == inf else hard)
    try:
        text = proc.read_text(pid, "limits", pid=pid)
        at = text.find("\nMax open files")
        if at >= 0:
            end = text.find("\n", at + 1)
            text = text[:text.find("\n") + 1] + text[at + 1:end if end >= 0 else None]
        limit = parse_limits(text).nofile
    except FdscopeError:
        return None, None
    return limit.soft, limit.hard


def _netns(proc: Proc, who: int | str) -> int | None:
    """The network namespace's inode ("net:[INODE]", fs/nsfs.c ns_dname), None if unreadable."""
    try:
        link = proc.readlink(who, "ns", "net")
    except FdscopeError:
        return None
    return int(link[5:-1]) if link.startswith("net:[") and link[5:-1].isdigit() else None


def _host(proc: Proc, notes: list[str]) -> tuple[FileNr | None, int | None]:
    file_nr = nr_open = None
    try:
        file_nr = parse_file_nr(proc.sysctl("fs.file-nr"))
    except FdscopeError as err:
        notes.append(f"fs.file-nr unreadable: {err}")
    try:
        nr_open = parse_int(proc.sysctl("fs.nr_open"), "fs.nr_open")
    except FdscopeError as err:
        notes.append(f"fs.nr_open unreadable: {err}")
    return file_nr, nr_open


def _kernel_counts() -> bool:
    """stat(/proc/PID/fd).st_size is the open fd count from Linux 6.2 on (0 before)."""
    release = os.uname().release
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m[1]), int(m[2])) >= (6, 2)


def scan_host(proc: Proc | None = None, *, select: ProcessFilter | None = None,
              flags: bool = True, pids: Collection[int] | None = None) -> HostSnapshot:
    """One scan of the host (a new Scanner's first scan: no growth)."""
    if pids is not None:
        select = ProcessFilter(frozenset(pids), *(select.uids, select.name) if select else ())
    return Scanner(proc, select=select, flags=flags).scan()
