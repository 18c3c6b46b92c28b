"""pid -> InspectReport: every fd, its socket, epoll interest lists, threads, io model, findings.

Everything is read from /proc through fdscope.proc.Proc (read-only: the target is never written
to, signalled or ptraced). Race policy (as psutil's): an fd or thread that vanishes mid-scan is
skipped and recorded; the process is checked once at the end, and if it has exited meanwhile the
scan fails with NoSuchProcess (exit 3) instead of reporting a half-dead process.

Cost model (measured by scripts/bench_inspect.py): one readlink per fd (the listdir only when
the fd table has holes); fdinfo (one open+read per fd) only where it matters; each
/proc/PID/net table read once per scan. Large tables are read on two CPUs (threads around the
GIL-free loops of the C accelerator, fdscope.speedups, or else the forked helper of
fdscope.scan), and `fdscope inspect PID` starts reading before click is imported
(fdscope.readahead). The per-row loops have C twins; the Python code stays the reference.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fdscope import readahead
from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ParseError, ProcGone
from fdscope.model import Finding
from fdscope.proc import Proc
from fdscope.readahead import NET_TABLES, Background
from fdscope.speedups import C

SCHEMA = "fdscope.inspect/1"
SECTIONS = ("summary", "findings", "fds", "epoll", "threads", "io_model")
# Above this many open fds, fdinfo (flags, pos) is read only where findings need it; reading it
# costs one open+read+close per fd, 3-4x a readlinkat() (measured).
FLAGS_ALL_MAX = readahead.FLAGS_ALL_MAX
FLAG_MODES = ("auto", "all", "needed")
# CPU window taken automatically when a thread is on CPU and none waits: confirms busy polling.
AUTO_SAMPLE = 0.25
SNAPSHOT_INTERVAL = 0.005
# From this many open fds on, the links and net tables are read on two CPUs: by a thread when
# the C module releases the GIL in its loops, else by a forked helper (fdscope.scan; at 4,000
# fds it saved ~20 % here; the fork costs ~1 ms plus copy-on-write faults). Below, in-process.
HELPER_MIN_FDS = readahead.MIN_FDS
# include/linux/sched.h: PF_KTHREAD in /proc/PID/stat field 9 marks a kernel thread.
PF_KTHREAD = 0x00200000
PATH_TYPES = frozenset({"file", "dir", "chr", "blk"})
# Types whose link text carries no inode: fs/anon_inodes.c gives most of them one shared inode.
ANON_TYPES = frozenset({"epoll", "eventfd", "timerfd", "signalfd", "inotify", "fanotify",
                        "pidfd", "io_uring", "anon"})


# One epoll registration as read: (tfd, mask, data, ino, sdev converted to st_dev encoding).
_Reg = tuple[int, int, int, "int | None", "int | None"]


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

    def to_json(self) -> dict[str, Any]:
        return {"tid": self.tid, "name": self.name, "state": self.state, "syscall": self.syscall,
                "wchan": self.wchan, "args": dict(self.args), "syscall_nr": self.syscall_nr,
                "cpu_percent": self.cpu_percent, "waits": self.waits,
                "wait_args": self.wait_args}


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

    def to_json(self) -> dict[str, Any]:
        return {"percent": self.percent, "window": self.window, "source": self.source,
                "snapshots": self.snapshots}


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
    threads: list[ThreadInfo] = field(default_factory=list)
    io_model: IoModel = IoModel("unknown", "not determined")
    cpu: Cpu | None = None
    net_namespace_shared: bool | None = None
    sections: tuple[str, ...] = SECTIONS
    types: tuple[str, ...] | None = None
    # (fds list, its length, its socket fds, their states): set by the scan that built fds, or
    # by the first fds_in_state() call.
    _socket_fds: Any = field(default=None, repr=False, compare=False)

    def fd_map(self) -> dict[int, FdEntry]:
        return {e.fd: e for e in self.fds}

    def fds_in_state(self, *states: str) -> list[FdEntry]:
        """Socket fds whose state is one of `states` (map/compress: 16,000 fds in ~1 ms)."""
        from itertools import compress
        from operator import attrgetter

        if self._socket_fds is None or self._socket_fds[0] is not self.fds \
                or self._socket_fds[1] != len(self.fds):
            socket_fds = list(compress(self.fds, map(attrgetter("socket"), self.fds)))
            self._socket_fds = (self.fds, len(self.fds), socket_fds,
                                list(map(attrgetter("socket.state"), socket_fds)))
        _fds, _n, socket_fds, socket_states = self._socket_fds
        return list(compress(socket_fds, map(frozenset(states).__contains__, socket_states)))

    def fds_with_flags(self) -> list[FdEntry]:
        """Fds whose flags were read (above 4096 fds, only some are: see FLAGS_ALL_MAX)."""
        from itertools import compress
        from operator import attrgetter

        return list(compress(self.fds, map(attrgetter("flags"), self.fds)))

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
        }
        if "summary" in shown:
            doc["summary"] = self.summary.to_json()
        if "findings" in shown:
            doc["findings"] = [f.to_json() for f in self.findings]
        if "fds" in shown:
            doc["fds"] = [e.to_json() for e in self.listed_fds()] if rows else []
        if "epoll" in shown:
            doc["epoll"] = [s.to_json() for s in self.epoll] if rows else []
        if "threads" in shown:
            doc["threads"] = [t.to_json() for t in self.threads]
        if "io_model" in shown:
            doc["io_model"] = self.io_model.to_json()
            doc["cpu"] = self.cpu.to_json() if self.cpu is not None else None
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


def inspect_process(
    pid: int,
    *,
    proc: Proc | None = None,
    sample: float | None = None,
    sections: Collection[str] | None = None,
    types: Collection[str] | None = None,
    flags: str = "auto",
) -> InspectReport:
    """Inspect process `pid` read-only.

    sample: seconds of CPU sampling (None: only when a thread spins and none waits; 0: never).
    sections: which parts to compute and show (default all of SECTIONS).
    types: restrict the listed fds (the summary always counts every fd).
    flags: "auto" (fdinfo for every fd up to FLAGS_ALL_MAX fds), "all", or "needed" (only epoll
    fds, path fds and edge-triggered targets)."""
    if flags not in FLAG_MODES:
        raise FdscopeError(f"unknown flags mode {flags!r} (choose from {', '.join(FLAG_MODES)})")
    scan = _Scan(pid, proc or Proc(), normalize_sections(sections), normalize_types(types), flags)
    # A scan allocates ~100,000 tuples and strings (16,000 fds) that live until it returns and
    # form no cycles: the cyclic collector would only walk them again and again (~10% of it).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return scan.run(sample)
    finally:
        if was_enabled:
            gc.enable()


class _Scan:
    """One pass over a process; holds the race record and shared lookups."""

    def __init__(self, pid: int, proc: Proc, sections: tuple[str, ...],
                 types: tuple[str, ...] | None, flags: str) -> None:
        self.pid = pid
        self.proc = proc
        self.sections = sections
        self.types = types
        self.flags_mode = flags
        self.vanished = 0  # fds/threads that disappeared mid-scan
        self.arch = os.uname().machine  # as platform.machine(), without its ~9 ms import
        self.report: InspectReport | None = None
        self.fdinfo_text: dict[int, str] = {}
        self.keys: dict[int, tuple[int, int] | None] = {}  # fd -> (st_ino, st_dev) when known
        self.type_dev: dict[str, int | None] = {}
        self.by_ino: dict[int, list[int]] | None = None
        self.anon_scanned = False
        self.helper: Any = None  # fdscope.scan.Helper (net tables, a third of the links)
        self.other_types: dict[int, str] = {}  # fd -> type of fds neither sockets nor pipes
        self.fd_list: list[int] = []  # the fds, ascending, and their columns:
        self.fd_type_col: list[str] = []
        self.fd_inodes: list[int | None] = []
        self.fd_index: dict[int, int] | None = None
        self.net_texts: list[tuple[str, str]] | None = None  # read ahead with the links
        self.epoll_pre: dict[int, str | None] | None = None  # epoll fdinfo read ahead
        self.rest_ahead = False  # the read-ahead's second stage is still to be taken

    # -- top level -----------------------------------------------------------------------
    def run(self, sample: float | None) -> InspectReport:
        from fdscope.parse.task import parse_cmdline, parse_stat

        pid, proc = self.pid, self.proc
        stat = parse_stat(proc.read_text(pid, "stat", pid=pid))
        try:
            cmdline = list(parse_cmdline(proc.read_bytes(pid, "cmdline", pid=pid)))
        except (ProcGone, AccessDenied):
            cmdline = []
        uid = self._uid()
        kthread = bool(getattr(stat, "is_kernel_thread", False) or stat.flags & PF_KTHREAD)
        rep = InspectReport(pid=pid, name=stat.comm, cmdline=cmdline, state=stat.state, uid=uid,
                            kernel_thread=kthread, sections=self.sections, types=self.types)
        self.report = rep
        rep.summary.threads = stat.num_threads
        self._limits(rep)
        if stat.state in ("Z", "X"):
            return self._zombie(rep, stat)
        if kthread:
            return self._kernel_thread(rep)

        try:
            self._scan(rep, stat, sample)
        except NoSuchProcess as err:
            raise NoSuchProcess(pid, f"process {pid} exited during the scan") from err
        if self.vanished:
            self._check_still_there()
            rep.notes.append(f"{self.vanished} fd(s)/thread(s) closed or exited during the scan "
                             "and were skipped")
        if "findings" in self.sections:
            from fdscope.findings import findings_for

            rep.findings = findings_for(rep)
        return rep

    def _scan(self, rep: InspectReport, stat: Any, sample: float | None) -> None:
        need_fds = bool(set(self.sections) - {"threads"})
        need_threads = bool({"threads", "findings", "io_model"} & set(self.sections))
        # With a read-ahead still reading the fds, read the threads first: it fills the wait.
        threads_first = need_threads and readahead.pending(self.pid, self.proc)
        if threads_first:
            self._scan_threads(rep)
        if need_fds:
            try:
                self._scan_fds(rep)
            finally:
                if self.helper is not None:
                    self.helper.close()
        if need_threads and not threads_first:
            self._scan_threads(rep)
        if "io_model" in self.sections or "findings" in self.sections:
            self._cpu(rep, stat, sample)
            from fdscope.iomodel import classify

            rep.io_model = classify(rep)

    def _uid(self) -> int | None:
        try:
            st = self.proc.stat(self.pid, pid=self.pid)
        except FdscopeError:
            return None
        return st.st_uid

    def _limits(self, rep: InspectReport) -> None:
        from fdscope.parse.limits import parse_limits

        try:
            nofile = parse_limits(self.proc.read_text(self.pid, "limits", pid=self.pid)).nofile
        except (ProcGone, AccessDenied, ParseError) as err:
            rep.partial = True
            rep.notes.append(f"RLIMIT_NOFILE unknown: {err}")
            return
        rep.summary.soft_limit, rep.summary.hard_limit = nofile.soft, nofile.hard

    def _zombie(self, rep: InspectReport, stat: Any) -> InspectReport:
        rep.notes.append(
            f"process {rep.pid} is a zombie: it has exited and holds no fds or threads; its parent "
            f"(pid {stat.ppid}) has not reaped it with wait()")
        rep.io_model = IoModel("unknown", f"zombie: exited, waiting for parent {stat.ppid} to reap it")
        rep.findings = [Finding("info", "zombie", rep.notes[-1])]
        return rep

    def _kernel_thread(self, rep: InspectReport) -> InspectReport:
        rep.notes.append(f"pid {rep.pid} is a kernel thread: it has no file descriptors of its "
                         "own and no user-space I/O model")
        rep.io_model = IoModel("unknown", "kernel thread")
        rep.findings = [Finding("info", "kernel_thread", rep.notes[-1])]
        return rep

    def _check_still_there(self) -> None:
        from fdscope.parse.task import parse_stat

        try:
            state = parse_stat(self.proc.read_text(self.pid, "stat", pid=self.pid)).state
        except (NoSuchProcess, ProcGone) as err:
            raise NoSuchProcess(self.pid, f"process {self.pid} exited during the scan") from err
        if state in ("Z", "X"):
            raise NoSuchProcess(self.pid, f"process {self.pid} exited during the scan")

    # -- fds -----------------------------------------------------------------------------
    def _scan_fds(self, rep: InspectReport) -> None:
        from collections import Counter
        from functools import partial
        from operator import attrgetter

        fds, links = self._fd_links()
        types, inodes, sockets_at, other_at = self._classify(fds, links)
        n = len(fds)
        self.fd_list, self.fd_type_col, self.fd_inodes = fds, types, inodes
        # Row of each fd: None when fd i is row i (ascending and dense, the usual table).
        self.fd_index = None if not fds or fds[-1] == n - 1 else \
            dict(zip(fds, range(n), strict=True))
        self.other_types = dict(zip(map(fds.__getitem__, other_at),
                                    map(types.__getitem__, other_at), strict=True))
        sock_inodes = set(map(inodes.__getitem__, sockets_at))
        if self.helper is not None:
            self.helper.send(sock_inodes)  # the helper parses only these rows of the net tables
        epfds = [fd for fd, typ in self.other_types.items() if typ == "epoll"]
        epoll_texts: Any = None  # () -> the epoll fdinfo texts, when read elsewhere
        if self.rest_ahead:
            epoll_texts = partial(self._epoll_ahead, epfds)
        elif self.net_texts is not None and epfds:
            # The kernel writes the interest lists (8,000 lines: ~14 ms) in a thread while
            # this one joins the sockets.
            epoll_texts = Background(readahead.epoll_texts, self.proc, self.pid, epfds).result
        else:
            raw_sets = self._read_epoll(epfds)  # meanwhile a forked helper parses net tables
        sockets = self._sockets(rep, sock_inodes) if sock_inodes else {}  # type: ignore[arg-type]
        if epoll_texts is not None:
            raw_sets = self._read_epoll(epfds, epoll_texts())
        want_flags = self._flag_fds(fds, raw_sets)
        infos = self._read_fdinfo(want_flags)

        # The socket of each socket fd (by index: a pipe may carry a socket's inode number, on
        # another filesystem), set at C speed; one missing from the tables gets "unknown".
        unknown_sock = SocketInfo("unknown", "UNKNOWN", None, None, None, None)
        socks = _socket_column(n, sockets_at, inodes, sockets, unknown_sock)
        flag_cols: list[list[Any]] = [[None] * n, [None] * n, [None] * n]  # names, pos, raw
        if infos:
            from fdscope.parse.events import decode_open_flags

            names_of: dict[int, tuple[str, ...]] = {}
            index = self.fd_index
            for fd, (raw, pos) in infos.items():
                i = fd if index is None else index[fd]
                if raw is not None:
                    if raw not in names_of:
                        names_of[raw] = decode_open_flags(raw, self.arch)
                    flag_cols[0][i] = names_of[raw]
                flag_cols[1][i], flag_cols[2][i] = pos, raw
        # Build every FdEntry once, in C, in NamedTuple field order.
        cols = (fds, types, links, inodes, flag_cols[0], flag_cols[1], socks, flag_cols[2])
        rep.fds = C.named_rows(FdEntry, cols) if C is not None else \
            list(map(partial(tuple.__new__, FdEntry), zip(*cols, strict=True)))
        by_type = Counter(types)
        socket_states = list(map(attrgetter("state"), map(socks.__getitem__, sockets_at)))
        states = Counter(socket_states)
        rep._socket_fds = (rep.fds, n, list(map(rep.fds.__getitem__, sockets_at)), socket_states)
        s = rep.summary
        s.open_fds = n
        s.highest_fd = fds[-1] if fds else None
        s.by_type = dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])))
        s.socket_states = dict(sorted(states.items(), key=lambda kv: (-kv[1], kv[0])))
        rep.epoll = self._epoll_sets(raw_sets)
        s.epoll_registrations = sum(len(e.registrations) for e in rep.epoll)
        if len(want_flags) < n:
            why = (f"above {FLAGS_ALL_MAX} open fds" if self.flags_mode == "auto"
                   else "with --flags needed")
            rep.notes.append(
                f"flags/pos read for {len(infos)} of {n} fds: {why} fdinfo is read only for "
                "epoll fds, path fds and edge-triggered targets (--flags all reads every fd)")

    def _classify(self, fds: list[int], links: list[str]
                  ) -> tuple[list[str], list[int | None], list[int], list[int]]:
        """Type and inode per fd from its link text (a stat only for path fds); also the
        indexes of the socket fds and of the fds that are neither sockets nor pipes."""
        from collections import deque
        from itertools import compress, repeat
        from operator import itemgetter, not_

        from fdscope.parse.fdlink import ANON_LINKS, classify_fd

        cache: dict[str, tuple[str, int | None]] = {}
        # Thousands of eventfds and timerfds are typed by their link text alone (epoll fds stay
        # among the others: the scan reads their interest lists).
        known = {link: (typ, None) for link, typ in ANON_LINKS.items() if typ != "epoll"}
        if C is not None:
            types, inodes, sockets_at, others = C.split_links(links, known)
        else:
            types, inodes, others = [], [], []
            add_type, add_inode = types.append, inodes.append
            sockets_at = []
            for i, link in enumerate(links):
                if link.startswith("socket:["):  # net/socket.c sockfs_dname "socket:[%lu]"
                    sockets_at.append(i)
                    add_type("socket")
                    add_inode(int(link[8:-1]))
                elif link.startswith("pipe:["):  # fs/pipe.c pipefs_dname "pipe:[%lu]"
                    add_type("pipe")
                    add_inode(int(link[6:-1]))
                elif link in known:
                    add_type(known[link][0])
                    add_inode(known[link][1])
                else:
                    others.append(i)
                    add_type(None)
                    add_inode(None)
        # Thousands of eventfds share one link text: classify each distinct text once, stat
        # each path fd, then set the columns at C speed.
        texts = list(map(links.__getitem__, others))
        is_path = list(map(str.startswith, texts, repeat("/")))
        for link in dict.fromkeys(compress(texts, map(not_, is_path))):
            t = classify_fd(link)
            cache[link] = (t.type, t.inode)
        hits = list(map(cache.get, texts))
        for k in compress(range(len(texts)), is_path):
            hits[k] = self._path_type(fds[others[k]], texts[k], classify_fd)
        deque(map(types.__setitem__, others, map(itemgetter(0), hits)), maxlen=0)
        deque(map(inodes.__setitem__, others, map(itemgetter(1), hits)), maxlen=0)
        return types, inodes, sockets_at, others

    def _fd_links(self) -> tuple[list[int], list[str]]:
        """(fds ascending, their link texts)."""
        pid, proc = self.pid, self.proc
        pre = None
        if readahead.pending(pid, proc):  # `fdscope inspect PID`: read while importing
            _import_rest()  # while the read-ahead thread may still be reading
            pre = readahead.take(pid, proc)
        if pre is not None:
            count, link_list, gone, _epfds = pre
            self.rest_ahead = True
            if not gone:
                return list(range(count)), link_list  # type: ignore[return-value]
            links = {str(fd): link for fd, link in enumerate(link_list) if link is not None}
        else:
            # Fd tables are mostly dense (open() takes the lowest free number), so 0..count-1
            # is usually the whole list and the listdir is saved.
            count = readahead.fd_count(proc, pid)
            names = list(map(str, range(count))) if count >= HELPER_MIN_FDS else \
                proc.listdir(pid, "fd", pid=pid)
            links, gone = self._read_links(names)
        guessed = count >= HELPER_MIN_FDS
        if guessed and not gone:
            return list(range(count)), list(links.values())
        if guessed:
            # Holes below `count`, so some fds sit above it: list the table, read the rest.
            listed = proc.listdir(pid, "fd", pid=pid)
            more, gone = proc.readlinks(pid, "fd", names=[n for n in listed if n not in links],
                                        pid=pid)
            links = {n: links.get(n) or more[n] for n in listed if n in links or n in more}
        self.vanished += gone
        fds = list(map(int, links))
        if all(map(int.__lt__, fds, fds[1:])):
            return fds, list(links.values())
        # procfs lists fds in ascending order (fs/proc/fd.c); a copied tree may not.
        pairs = sorted(zip(fds, links.values(), strict=False))
        return [fd for fd, _ in pairs], [link for _, link in pairs]

    def _read_links(self, names: list[str]) -> tuple[dict[str, str], int]:
        """readlinks of names, on two CPUs for large tables."""
        pid, proc = self.pid, self.proc
        if len(names) >= HELPER_MIN_FDS and C is not None:
            # The C readlinkat loop releases the GIL, so a thread is a second CPU: it reads half
            # the links and the net tables while this thread reads the other half and imports.
            half = len(names) // 2
            bg = Background(self._links_and_net, names[half:])
            links, gone = proc.readlinks(pid, "fd", names=names[:half], pid=pid)
            _import_rest()
            (more, more_gone), self.net_texts = bg.result()
        elif len(names) >= HELPER_MIN_FDS and _single_threaded():
            from fdscope.scan import Helper

            split = len(names) * 2 // 3  # the helper first reads the net tables
            self.helper = Helper(_helper_work, proc, pid, names[split:])
            links, gone = proc.readlinks(pid, "fd", names=names[:split], pid=pid)
            _import_rest()  # while the helper still reads its share
            frame = self.helper.next()
            more, more_gone = frame if frame is not None else \
                proc.readlinks(pid, "fd", names=names[split:], pid=pid)
        else:
            return proc.readlinks(pid, "fd", names=names, pid=pid)
        links.update(more)
        return links, gone + more_gone

    def _links_and_net(self, names: list[str]) -> tuple[tuple[dict[str, str], int],
                                                         list[tuple[str, str]]]:
        return (self.proc.readlinks(self.pid, "fd", names=names, pid=self.pid),
                readahead.net_texts(self.proc, self.pid))

    def _path_type(self, fd: int, link: str, classify_fd: Any) -> tuple[str, int | None]:
        try:
            st = self.proc.stat(self.pid, "fd", fd, pid=self.pid)
        except (ProcGone, AccessDenied):
            t = classify_fd(link)
            return (t.type, t.inode)
        self.keys[fd] = (st.st_ino, st.st_dev)
        t = classify_fd(link, st.st_mode)
        return (t.type, st.st_ino)

    def _flag_fds(self, order: list[int], raw_sets: dict[int, list[_Reg]]) -> list[int]:
        if self.flags_mode == "all" or (self.flags_mode == "auto" and len(order) <= FLAGS_ALL_MAX):
            return order
        from itertools import compress
        from operator import itemgetter

        from fdscope.parse.events import EPOLLET

        want = {fd for fd, typ in self.other_types.items() if typ in PATH_TYPES or typ == "epoll"}
        for regs in raw_sets.values():  # the edge-triggered targets, picked at C speed
            et = {mask for mask in set(map(itemgetter(1), regs)) if mask & EPOLLET}
            want.update(compress(map(itemgetter(0), regs),
                                 map(et.__contains__, map(itemgetter(1), regs))))
        return sorted(filter(self._is_open, want))

    def _row(self, fd: int) -> int | None:
        """The row of fd in the columns, None when it is not open."""
        if self.fd_index is not None:
            return self.fd_index.get(fd)
        return fd if 0 <= fd < len(self.fd_list) else None

    def _is_open(self, fd: int) -> bool:
        return self._row(fd) is not None

    def _take_rest(self) -> None:
        """The read-ahead's second stage (net tables, epoll and other fdinfo texts), once; the
        scan reads what it lacks itself."""
        if self.rest_ahead:
            self.rest_ahead = False
            rest = readahead.take_rest(self.pid, self.proc)
            if rest is not None:
                self.net_texts, self.epoll_pre, fdinfo = rest
                self.fdinfo_text.update(fdinfo)

    def _epoll_ahead(self, epfds: list[int]) -> dict[int, str | None]:
        self._take_rest()
        if self.epoll_pre is not None and set(self.epoll_pre) == set(epfds):
            return self.epoll_pre
        return readahead.epoll_texts(self.proc, self.pid, epfds)

    def _read_fdinfo(self, fds: list[int]) -> dict[int, tuple[int | None, int | None]]:
        """fd -> (flags, pos) from /proc/PID/fdinfo/FD."""
        self._take_rest()
        out: dict[int, tuple[int | None, int | None]] = {}
        texts, gone = self.proc.read_many(
            self.pid, "fdinfo", names=[str(fd) for fd in fds if fd not in self.fdinfo_text],
            pid=self.pid)
        self.vanished += gone
        for fd in fds:
            text = self.fdinfo_text.get(fd) or texts.get(str(fd))
            if text is None:
                continue  # closed meanwhile (counted)
            head = _fdinfo_head(text)
            if head is not None:
                out[fd] = head
                continue
            from fdscope.parse.fdinfo import parse_fdinfo  # the full parser, seldom needed

            try:
                info = parse_fdinfo(text)
            except ParseError as err:
                self._partial(f"fd {fd}: {err}")
                continue
            out[fd] = (info.flags, info.pos)
        return out

    def _partial(self, note: str) -> None:
        assert self.report is not None
        self.report.partial = True
        self.report.notes.append(note)

    # -- epoll ---------------------------------------------------------------------------
    def _read_epoll(self, epfds: list[int], texts: dict[int, str | None] | None = None
                    ) -> dict[int, list[_Reg]]:
        """epfd -> [(tfd, mask, data, ino, sdev as st_dev)] from each epoll fd's fdinfo (read
        here unless `texts` holds them), sorted by tfd: the kernel lists its red-black tree
        order (by file pointer), and a closed and a new registration may share a tfd, so the
        sort is stable (C.epoll_rows and _epoll_fast sort as they parse)."""
        sets: dict[int, list[_Reg]] = {}
        if texts is None:
            texts = readahead.epoll_texts(self.proc, self.pid, epfds)
        for epfd, text in texts.items():
            if text is None:
                self.vanished += 1
                continue
            self.fdinfo_text[epfd] = text
            fast = C.epoll_rows(text) if C is not None else None
            if fast is None:
                fast = _epoll_fast(text)
            if fast is not None:
                sets[epfd] = fast
                continue
            from fdscope.parse.fdinfo import kernel_dev_to_userspace, parse_fdinfo

            try:
                info = parse_fdinfo(text)
            except ParseError as err:
                self._partial(f"epoll fd {epfd}: interest list unreadable: {err}")
                continue
            sets[epfd] = sorted(((t.tfd, t.events, t.data, t.ino,
                                  kernel_dev_to_userspace(t.sdev) if t.sdev is not None else None)
                                 for t in info.epoll), key=lambda reg: reg[0])
            if info.epoll and info.epoll[0].ino is None:
                self._partial(f"epoll fd {epfd}: this kernel prints no target inode/device, so "
                              "closed and reused registrations cannot be told from ok ones")
            if info.unknown:
                self._partial(f"epoll fd {epfd}: {len(info.unknown)} unrecognised fdinfo line(s) "
                              f"kept as text, e.g. {info.unknown[0][:60]!r}")
        return sets

    def _stat_key(self, fd: int) -> tuple[int, int] | None:
        """(st_ino, st_dev) of the file open as fd (one stat, cached)."""
        if fd not in self.keys:
            try:
                st = self.proc.stat(self.pid, "fd", fd, pid=self.pid)
            except (ProcGone, AccessDenied):
                self.keys[fd] = None
            else:
                self.keys[fd] = (st.st_ino, st.st_dev)
        return self.keys[fd]

    def _fd_key(self, fd: int) -> tuple[int, int] | None:
        """Identity of fd: socket/pipe inodes from the link text plus their filesystem's device
        (sockfs and pipefs are single kernel-internal mounts: one stat per type gives it)."""
        if fd in self.keys:
            return self.keys[fd]
        row = self._row(fd)
        if row is None:
            return self._stat_key(fd)
        typ, ino = self.fd_type_col[row], self.fd_inodes[row]
        if ino is None or typ not in ("socket", "pipe"):
            return self._stat_key(fd)
        if typ not in self.type_dev:
            key = self._stat_key(fd)
            self.type_dev[typ] = key[1] if key is not None else None
            return key
        dev = self.type_dev[typ]
        return (ino, dev) if dev is not None else self._stat_key(fd)

    def _epoll_sets(self, raw_sets: dict[int, list[_Reg]]) -> list[EpollSet]:
        from collections import Counter
        from operator import itemgetter

        from fdscope.parse.events import decode_epoll_mask

        if not raw_sets:
            return []
        type_col, inodes = self.fd_type_col, self.fd_inodes
        # Shared anon inode (fs/anon_inodes.c): an epoll fd always has it, so stat one.
        anon_key = self._stat_key(next(iter(raw_sets)))
        ino_count = Counter(inodes)
        for typ in ("socket", "pipe"):  # the device of each of those filesystems: one stat
            if typ in self.fd_type_col:
                self._fd_key(self.fd_list[self.fd_type_col.index(typ)])
        type_dev = self.type_dev
        new = tuple.__new__
        mask_names: dict[int, tuple[str, ...]] = {}
        out: list[EpollSet] = []
        for epfd, regs in raw_sets.items():
            if C is not None:
                for mask in set(map(itemgetter(1), regs)) - mask_names.keys():
                    mask_names[mask] = decode_epoll_mask(mask)
                # The fast path below, in C; None where the slow path must decide.
                rows = C.registrations(regs, type_col, inodes, self.fd_index, ino_count, type_dev,
                                       mask_names, Registration)
                if None in rows:
                    for i in [i for i, r in enumerate(rows) if r is None]:
                        tfd, mask, data, ino, sdev = regs[i]
                        rows[i] = self._registration(tfd, mask, mask_names[mask], data, ino, sdev,
                                                     anon_key)
                out.append(EpollSet(epfd, tuple(rows)))
                continue
            rows = []
            append = rows.append
            for tfd, mask, data, ino, sdev in regs:
                names = mask_names.get(mask)
                if names is None:
                    names = mask_names[mask] = decode_epoll_mask(mask)
                row = self._row(tfd)
                # Fast path: the tfd's link names the same inode on sockfs/pipefs, no dup.
                if (row is not None and inodes[row] == ino and ino_count[ino] == 1
                        and type_dev.get(type_col[row], -1) == sdev):
                    append(new(Registration, (tfd, mask, names, data, ino, sdev, "ok", (tfd,),
                                              True)))
                else:
                    append(self._registration(tfd, mask, names, data, ino, sdev, anon_key))
            out.append(EpollSet(epfd, tuple(rows)))
        return out

    def _registration(self, tfd: int, mask: int, names: tuple[str, ...], data: int,
                      ino: int | None, sdev: int | None,
                      anon_key: tuple[int, int] | None) -> Registration:
        """Status of one registration: ok (tfd is that file), closed (tfd not open) or reused
        (tfd names another file); open_as = this process's fds holding the watched file."""
        open_now = self._is_open(tfd)
        if ino is None or sdev is None:
            # Kernels before 3.19 print no ino/sdev (fs/eventpoll.c): identity unknowable.
            return Registration(tfd, mask, names, data, ino, sdev, "ok" if open_now else "closed",
                                (tfd,) if open_now else (), False)
        key = (ino, sdev)
        status = ("ok" if self._fd_key(tfd) == key else "reused") if open_now else "closed"
        if key == anon_key:
            # Every anon_inode file shares one inode: holders cannot be told apart.
            return Registration(tfd, mask, names, data, ino, sdev, status,
                                (tfd,) if status == "ok" else (), False)
        holders = [fd for fd in self._by_ino().get(ino, ()) if self._fd_key(fd) == key]
        if not holders and not self.anon_scanned:
            # A file whose link has no inode (pidfs, memfd, ...): stat those fds, once.
            self.anon_scanned = True
            by_ino = self._by_ino()
            for fd, fino in zip(self.fd_list, self.fd_inodes, strict=True):
                if fino is None:
                    k = self._stat_key(fd)
                    if k is not None:
                        by_ino.setdefault(k[0], []).append(fd)
            holders = [fd for fd in by_ino.get(ino, ()) if self._fd_key(fd) == key]
        return Registration(tfd, mask, names, data, ino, sdev, status, tuple(sorted(set(holders))),
                            True)

    def _by_ino(self) -> dict[int, list[int]]:
        if self.by_ino is None:
            self.by_ino = {}
            for fd, ino in zip(self.fd_list, self.fd_inodes, strict=True):
                if ino is not None:
                    self.by_ino.setdefault(ino, []).append(fd)
        return self.by_ino

    # -- sockets -------------------------------------------------------------------------
    def _sockets(self, rep: InspectReport, inodes: set[int]) -> dict[int, SocketInfo]:
        """inode -> SocketInfo for `inodes`, joined from the target's /proc/PID/net tables."""
        from itertools import compress
        from operator import attrgetter

        found: dict[int, SocketInfo] = {}
        listeners: dict[str, list[int]] = {"inet": [], "unix": []}
        tables = self.helper.next() if self.helper is not None else None
        if tables is None:
            tables = self._net_tables(inodes)
        # Rows are only those for `inodes`; the first table listing an inode wins.
        for table, status, payload in tables:
            if status == "error":
                self._partial(f"/proc/{self.pid}/net/{table}: {payload}")
                continue
            infos = payload if isinstance(payload, dict) else _infos_of_rows(payload)
            infos.update(found)  # found: the earlier tables' rows, which win
            found = infos
        for ino in compress(found, map("LISTEN".__eq__, map(attrgetter("state"), found.values()))):
            listeners["unix" if found[ino].proto == "unix" else "inet"].append(ino)
        rep.net_namespace_shared = self._same_netns()
        if listeners["inet"] or listeners["unix"]:
            self._listen_queues(rep, found, listeners)
        missing = len(inodes) - len(found)
        if missing:
            rep.notes.append(f"{missing} socket(s) not in the target's /proc/PID/net tables "
                             "(another family such as vsock or bluetooth, or a socket from "
                             "another network namespace): proto unknown")
        return found

    def _net_tables(self, inodes: set[int] | None) -> list[tuple[str, str, Any]]:
        """Read (unless read ahead) and parse each net table once: [(table, "ok", {inode:
        SocketInfo}) | (table, "error", msg)]. Stops once every inode is found."""
        out: list[tuple[str, str, Any]] = []
        seen = 0
        self._take_rest()
        texts = dict(self.net_texts) if self.net_texts is not None else None
        for table in NET_TABLES:
            if inodes is not None and seen >= len(inodes):
                break
            text = texts.get(table) if texts is not None else self._net_text(table)
            if text is not None:
                try:
                    out.append((table, "ok", _socket_infos(table, text, inodes)))
                except ParseError as err:
                    out.append((table, "error", str(err)))
                seen += len(out[-1][2]) if out[-1][1] == "ok" else 0
        return out

    def _net_text(self, table: str) -> str | None:
        try:
            return self.proc.read_text(self.pid, "net", table, pid=self.pid)
        except (ProcGone, AccessDenied):
            return None  # absent (no IPv6, module not loaded) or hidden

    def _listen_queues(self, rep: InspectReport, found: dict[int, SocketInfo],
                       listeners: dict[str, list[int]]) -> None:
        """Fill LISTEN send_q (the backlog) from sock_diag, as ss does, when netns is shared."""
        if not rep.net_namespace_shared:
            rep.notes.append("target is in another network namespace: LISTEN backlog (send_q) "
                             "unknown (sock_diag answers only for fdscope's own namespace)")
            return
        from fdscope import netdiag

        for kind, query in (("inet", netdiag.inet_listen_queues),
                            ("unix", netdiag.unix_listen_queues)):
            if not listeners[kind]:
                continue
            try:
                queues = query(listeners[kind])
            except OSError as err:
                rep.notes.append(f"sock_diag ({kind}) failed, LISTEN backlog unknown: {err}")
                continue
            for ino, (rq, wq) in queues.items():
                found[ino] = found[ino]._replace(recv_q=rq, send_q=wq)

    def _same_netns(self) -> bool:
        try:
            theirs = self.proc.stat(self.pid, "ns", "net", pid=self.pid)
            ours = os.stat("/proc/self/ns/net")
        except (FdscopeError, OSError):
            return False
        return (theirs.st_ino, theirs.st_dev) == (ours.st_ino, ours.st_dev)

    # -- threads -------------------------------------------------------------------------
    def _scan_threads(self, rep: InspectReport) -> None:
        from fdscope.parse.syscall import decode_args, parse_syscall, syscall_name
        from fdscope.parse.task import parse_stat

        pid, proc = self.pid, self.proc
        try:
            tids = sorted(int(t) for t in proc.listdir(pid, "task", pid=pid))
        except AccessDenied as err:
            self._partial(f"threads unreadable: {err}")
            return
        denied = 0
        threads: list[ThreadInfo] = []
        self.thread_ticks: dict[int, int] = {}
        for tid in tids:
            try:
                st = parse_stat(proc.read_text(pid, "task", tid, "stat", pid=pid))
            except ProcGone:
                self.vanished += 1
                continue
            except ParseError as err:
                self._partial(f"thread {tid}: {err}")
                continue
            self.thread_ticks[tid] = st.utime + st.stime
            wchan = self._wchan(tid)
            syscall: str | None = None
            nr: int | None = None
            args: dict[str, int] = {}
            try:
                sc = parse_syscall(proc.read_text(pid, "task", tid, "syscall", pid=pid))
            except AccessDenied:
                denied += 1
            except ProcGone:
                self.vanished += 1
                continue
            except ParseError as err:
                self._partial(f"thread {tid}: {err}")
            else:
                if sc.running:
                    syscall = "running"
                elif sc.nr is None or sc.nr < 0:
                    syscall = "none"
                else:
                    nr = sc.nr
                    syscall = syscall_name(sc.nr, self.arch)
                    args = dict(decode_args(syscall, sc.args))
            threads.append(ThreadInfo(tid, st.comm, st.state, syscall, wchan, args, nr))
        if denied:
            self._partial(
                f"syscall of {denied} thread(s) unreadable: /proc/PID/task/TID/syscall needs "
                "ptrace attach access (same uid and ptrace_scope permitting, or root / "
                "CAP_SYS_PTRACE); wchan shown instead")
        rep.threads = threads
        rep.summary.threads = len(threads)

    def _wchan(self, tid: int) -> str | None:
        try:
            text = self.proc.read_text(self.pid, "task", tid, "wchan", pid=self.pid).strip()
        except (ProcGone, AccessDenied):
            return None
        # fs/proc/base.c proc_pid_wchan prints "0" when running or when the symbol is hidden.
        return text if text and text != "0" else None

    # -- cpu -----------------------------------------------------------------------------
    def _cpu(self, rep: InspectReport, stat: Any, sample: float | None) -> None:
        from fdscope.iomodel import needs_cpu_sample

        hz = os.sysconf("SC_CLK_TCK")
        if sample is None and needs_cpu_sample(rep):
            sample = AUTO_SAMPLE
            rep.notes.append(f"a thread was on CPU and none waited: CPU sampled for {AUTO_SAMPLE} s")
        if sample:
            rep.cpu = self._sample_cpu(rep, hz, sample)
            return
        try:
            uptime = float(self.proc.read_text("uptime").split()[0])
        except (FdscopeError, ValueError, IndexError):
            return
        age = uptime - stat.starttime / hz
        if age > 0:
            pct = 100.0 * (stat.utime + stat.stime) / hz / age
            rep.cpu = Cpu(round(pct, 1), round(age, 1), "lifetime")

    def _sample_cpu(self, rep: InspectReport, hz: int, seconds: float) -> Cpu | None:
        """CPU over `seconds`, and meanwhile which blocking calls each thread is seen in.

        One snapshot of a loaded event loop often catches it running, not in epoll_wait; reading
        every thread's syscall file every SNAPSHOT_INTERVAL through the window tells a busy loop
        that still blocks from one that never does (a poor man's wait profiler, read-only)."""
        from fdscope.parse.task import parse_stat

        pid, proc = self.pid, self.proc
        before = parse_stat(proc.read_text(pid, "stat", pid=pid))
        t0 = time.monotonic()
        starts = self._thread_ticks()
        waits: dict[int, Counter[str]] = {t.tid: Counter() for t in rep.threads}
        last_args: dict[tuple[int, str], dict[str, int]] = {}
        snapshots = 0
        deadline = t0 + seconds
        while True:
            self._snapshot_waits(waits, last_args)
            snapshots += 1
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(SNAPSHOT_INTERVAL, left))
        after = parse_stat(proc.read_text(pid, "stat", pid=pid))
        ends = self._thread_ticks()
        elapsed = time.monotonic() - t0
        ticks = (after.utime + after.stime) - (before.utime + before.stime)
        per_thread = {tid: round(100.0 * (ends[tid] - starts[tid]) / hz / elapsed, 1)
                      for tid in starts if tid in ends}
        threads = []
        for t in rep.threads:
            seen = waits.get(t.tid)
            top = seen.most_common(1)[0][0] if seen else None
            threads.append(t._replace(
                cpu_percent=per_thread.get(t.tid),
                waits=dict(seen.most_common()) if seen else None,
                wait_args=last_args.get((t.tid, top)) if top else None))
        rep.threads = threads
        return Cpu(round(100.0 * ticks / hz / elapsed, 1), round(elapsed, 3), "sample", snapshots)

    def _snapshot_waits(self, waits: dict[int, Counter[str]],
                        last_args: dict[tuple[int, str], dict[str, int]]) -> None:
        from fdscope.iomodel import WAIT_CALLS
        from fdscope.parse.syscall import decode_args, parse_syscall, syscall_name

        for tid, seen in waits.items():
            try:
                sc = parse_syscall(self.proc.read_text(self.pid, "task", tid, "syscall",
                                                       pid=self.pid))
            except (ProcGone, AccessDenied, ParseError):
                continue
            if sc.running or sc.nr is None or sc.nr < 0:
                continue
            name = syscall_name(sc.nr, self.arch)
            # A zero timeout polls without blocking (epoll_wait(2), poll(2)): not a wait.
            if name not in WAIT_CALLS:
                continue
            args = decode_args(name, sc.args)
            if args.get("timeout") != 0:
                seen[name] += 1
                last_args[(tid, name)] = dict(args)

    def _thread_ticks(self) -> dict[int, int]:
        from fdscope.parse.task import parse_stat

        out: dict[int, int] = {}
        for t in self.report.threads if self.report else ():
            try:
                st = parse_stat(self.proc.read_text(self.pid, "task", t.tid, "stat", pid=self.pid))
            except (ProcGone, ParseError):
                continue
            out[t.tid] = st.utime + st.stime
        return out


# -- fast paths over the contract parsers ---------------------------------------------------
# fs/eventpoll.c ep_show_fdinfo: "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x".
# Anything else (older kernels without pos/ino/sdev, extra tokens) falls back to parse_fdinfo.
# Compiled on first use by re's cache: with the C module, only input C refuses gets here.
_EPOLL_LINE = (r"(?ma)^tfd:\s*(\d+) events:\s*([0-9a-f]+) data:\s*([0-9a-f]+)\s+pos:(-?\d+) "
               r"ino:([0-9a-f]+) sdev:([0-9a-f]+)$")
_HEAD = re.compile(r"\Apos:\t(\d+)\nflags:\t([0-7]+)\n", re.ASCII)


def _epoll_fast(text: str) -> list[_Reg] | None:
    """The registrations of an epoll fdinfo in the current kernel format, sdev already converted
    to st_dev encoding, sorted by tfd as _read_epoll gives them; None to fall back to
    parse_fdinfo."""
    from operator import itemgetter

    from fdscope.parse.fdinfo import kernel_dev_to_userspace

    rows = re.findall(_EPOLL_LINE, text)
    if len(rows) != text.count("tfd:") or _HEAD.match(text) is None:
        return None
    devs: dict[str, int] = {}
    out: list[_Reg] = []
    append = out.append
    for tfd, mask, data, _pos, ino, sdev in rows:
        dev = devs.get(sdev)
        if dev is None:
            dev = devs[sdev] = kernel_dev_to_userspace(int(sdev, 16))
        append((int(tfd), int(mask, 16), int(data, 16), int(ino, 16), dev))
    out.sort(key=itemgetter(0))
    return out


def _fdinfo_head(text: str) -> tuple[int, int] | None:
    """(flags, pos) from the two first fdinfo lines (fs/proc/fd.c seq_show), or None to fall back."""
    m = _HEAD.match(text)
    if m is None:
        return None
    return (int(m.group(2), 8), int(m.group(1)))


_INODE_COLUMN = {"unix": 6, "netlink": 9, "packet": 8}
# net/unix/af_unix.c unix_seq_show: "%pK: %08X %08X %08X %04X %02X %5lu" then " PATH" if bound.
# (The two table patterns are compiled on first use, in the helper when it runs, by re's cache.)
_UNIX_ROW = (r"(?ma)^[0-9a-fA-F]+: [0-9A-F]+ [0-9A-F]+ ([0-9A-F]+) [0-9A-F]+ ([0-9A-F]+) +"
             r"([0-9]+)(?: (.*))?$")


def _unix_fast(text: str, inodes: set[int] | None) -> list[tuple[Any, ...]] | None:
    """Rows of /proc/PID/net/unix for `inodes`, with parse_unix's names; None to fall back
    (unexpected header, or a path holding a newline)."""
    from fdscope.parse.states import SO_ACCEPTCON, UNIX_STATES

    if not text.startswith("Num"):
        return None
    rows = re.findall(_UNIX_ROW, text)
    if len(rows) != text.count("\n") - 1:
        return None
    out: list[tuple[Any, ...]] = []
    for flags, st, ino_s, path in rows:
        ino = int(ino_s)
        if inodes is not None and ino not in inodes:
            continue
        if int(flags, 16) & SO_ACCEPTCON:
            state = "LISTEN"
        else:
            state = UNIX_STATES.get(int(st, 16)) or f"{int(st, 16):#04x}"
        out.append((ino, "unix", state, path or None, None, None, None))
    return out


def _net_rows(table: str, text: str, inodes: set[int] | None) -> list[tuple[Any, ...]]:
    """Rows of one /proc/PID/net table as (inode, proto, state, local, remote, recv_q, send_q),
    only for `inodes` (None: every row). Raises ParseError for a malformed row."""
    if C is not None and table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix"):
        from fdscope.parse.states import inet_state

        rows = C.unix_rows(text, inodes) if table == "unix" else C.inet_rows(text, inodes)
        if rows is not None and table == "unix":
            return rows
        if rows is not None:
            is_tcp, states = table.startswith("tcp"), {}
            out = []
            for ino, local, remote, st, tx, rx, _uid in rows:
                state = states.get((st, tx))
                if state is None:
                    state = states[st, tx] = inet_state(is_tcp, st, tx)
                out.append((ino, table, state[0], local, remote, rx, state[1]))
            return out
    if table == "unix":
        fast = _unix_fast(text, inodes)
        if fast is not None:
            return fast
    sub = _only_inodes(text, table, inodes) if inodes is not None else text
    if sub is None:
        return []
    from fdscope.parse import net  # the full parsers: regexes compiled, ~3 ms to import

    if table == "unix":
        parse = net.parse_unix
    elif table == "netlink":
        parse = net.parse_netlink
    elif table == "packet":
        parse = net.parse_packet
    else:
        def parse(t: str) -> list[Any]:
            return net.parse_inet(t, table)
    return [(r.inode, r.proto, r.state, r.local, r.remote, r.recv_q, r.send_q) for r in parse(sub)]


def _socket_column(n: int, at: list[int], inodes: list[int | None],
                   sockets: dict[int, SocketInfo], unknown: SocketInfo) -> list[SocketInfo | None]:
    """n Nones, except at each row in `at`: sockets.get(inodes[row], unknown) (C.socket_column
    is its twin)."""
    if C is not None:
        return C.socket_column(n, at, inodes, sockets, unknown)  # type: ignore[no-any-return]
    from collections import deque
    from itertools import repeat

    column: list[SocketInfo | None] = [None] * n
    deque(map(column.__setitem__, at, map(sockets.get, map(inodes.__getitem__, at),
                                          repeat(unknown))), maxlen=0)
    return column


def _infos_of_rows(rows: list[tuple[Any, ...]]) -> dict[int, SocketInfo]:
    """{inode: SocketInfo} of _net_rows rows (inode, proto, state, local, remote, recv_q,
    send_q), built at C speed (map/zip)."""
    from functools import partial
    from operator import itemgetter

    return dict(zip(map(itemgetter(0), rows),
                    map(partial(tuple.__new__, SocketInfo), map(itemgetter(slice(1, None)), rows)),
                    strict=True))


def _socket_infos(table: str, text: str, inodes: set[int] | None) -> dict[int, SocketInfo]:
    """{inode: SocketInfo} of one /proc/PID/net table's rows for `inodes` (None: every row);
    C.sockets builds them straight from the text, and _net_rows is its twin. Raises
    ParseError for a malformed row."""
    if C is not None:
        infos = C.sockets(table, text, inodes, SocketInfo)
        if infos is not None:
            return infos  # type: ignore[no-any-return]
    return _infos_of_rows(_net_rows(table, text, inodes))


def _only_inodes(text: str, table: str, inodes: set[int]) -> str | None:
    """The table's header plus only the rows for `inodes` (cheap pre-filter before parsing)."""
    head, _, body = text.partition("\n")
    if not body.strip():
        return None
    col = _INODE_COLUMN.get(table, 9)
    keep = [head]
    kept = False
    for line in body.splitlines():
        parts = line.split(None, col + 1)
        if len(parts) > col and parts[col].isdigit():
            kept = int(parts[col]) in inodes
            if kept:
                keep.append(line)
        elif table == "unix":
            if kept:
                keep.append(line)  # a unix path holding a newline continues on the next line
        else:
            keep.append(line)  # malformed: let the parser say so
    if len(keep) == 1:
        return None
    return "\n".join(keep) + "\n"


def _import_rest() -> None:
    """Import what the rest of a scan and the JSON output use (~10 ms in a fresh process)."""
    import fdscope.findings  # noqa: F401
    import fdscope.iomodel  # noqa: F401
    import fdscope.netdiag  # noqa: F401
    import fdscope.parse.events  # noqa: F401
    import fdscope.parse.syscall  # noqa: F401
    import fdscope.render.inspect  # noqa: F401


def _single_threaded() -> bool:
    """True when forking is safe: no other thread could hold a lock the child would need (a
    library caller such as `fdscope run` may have servers running in threads)."""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


def _helper_work(proc: Proc, pid: int, names: list[str], recv: Any) -> Iterator[Any]:
    """What the forked helper (fdscope.scan) does: read every /proc/PID/net table, readlink
    `names` (the last third of the fds), then parse only the rows for the socket inodes the
    parent sends (the tables list the whole network namespace)."""
    texts = readahead.net_texts(proc, pid)
    yield proc.readlinks(pid, "fd", names=names, pid=pid)
    inodes = recv()
    if inodes is None:
        return  # the parent gave up (an error): stop at once
    yield [_parse_net(table, text, inodes) for table, text in texts]


def _parse_net(table: str, text: str, inodes: set[int] | None) -> tuple[str, str, Any]:
    try:
        return (table, "ok", _net_rows(table, text, inodes))
    except ParseError as err:
        return (table, "error", str(err))


def iter_watch(pid: int, interval: float, *, proc: Proc | None = None,
               count: int | None = None, sleep: Any = time.sleep) -> Iterator[dict[str, Any]]:
    """Yield fd counts by type every `interval` seconds (`count` samples, or forever).

    Each sample: t (seconds since start), open_fds, by_type, delta (since the previous sample,
    by type), growth_per_min (open fds per minute, linear over the whole watch)."""
    proc = proc or Proc()
    first: tuple[float, int] | None = None
    prev: dict[str, int] | None = None
    n = 0
    while count is None or n < count:
        if n:
            sleep(interval)
        t = time.monotonic()
        by_type = _count_types(pid, proc)
        total = sum(by_type.values())
        if first is None:
            first = (t, total)
        elapsed = t - first[0]
        delta = {k: by_type.get(k, 0) - prev.get(k, 0)
                 for k in sorted(set(by_type) | set(prev)) if by_type.get(k, 0) != prev.get(k, 0)} \
            if prev is not None else {}
        growth = round((total - first[1]) * 60.0 / elapsed, 1) if elapsed > 0 else None
        yield {"t": round(elapsed, 3), "open_fds": total, "by_type": by_type, "delta": delta,
               "delta_total": total - sum(prev.values()) if prev is not None else 0,
               "growth_per_min": growth}
        prev = by_type
        n += 1


def _count_types(pid: int, proc: Proc) -> dict[str, int]:
    from fdscope.parse.fdlink import classify_fd

    names = proc.listdir(pid, "fd", pid=pid)
    counts: dict[str, int] = {}
    cache: dict[str, str] = {}
    for name in names:
        try:
            link = proc.readlink(pid, "fd", name, pid=pid)
        except ProcGone:
            continue
        if link.startswith("socket:["):
            typ = "socket"
        elif link.startswith("pipe:["):
            typ = "pipe"
        else:
            typ = cache.get(link) or ""
            if not typ:
                st_mode = None
                if link.startswith("/"):
                    try:
                        st_mode = proc.stat(pid, "fd", name, pid=pid).st_mode
                    except ProcGone:
                        continue
                typ = classify_fd(link, st_mode).type
                if not link.startswith("/"):
                    cache[link] = typ
        counts[typ] = counts.get(typ, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
