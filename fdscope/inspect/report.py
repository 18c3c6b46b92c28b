"""pid -> InspectReport: gather the raw text, turn it into the report, judge it.

The flow, one direction only:
  gather (every read)  ->  fds, sockets, epoll, threads (pure)  ->  model  ->  iomodel, findings
Race policy (as psutil's): an fd or thread that vanishes mid-scan is skipped and counted; the
process is checked once at the end, and if it has exited meanwhile the scan fails with
NoSuchProcess (exit 3) instead of reporting a half-dead process.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Collection

from fdscope.errors import FdscopeError, NoSuchProcess, ParseError, ProcGone
from fdscope.inspect import epoll, fds, gather, readahead, sockets, threads, uring
from fdscope.inspect.findings import CLOSE_WAIT_PILE, findings_for
from fdscope.inspect.iomodel import WAIT_CALLS, classify, needs_cpu_sample
from fdscope.inspect.model import InspectReport, IoModel, normalize_sections, normalize_types
from fdscope.model import Finding
from fdscope.parse.events import EPOLLET
from fdscope.parse.limits import parse_limits
from fdscope.parse.net import parse_netstat
from fdscope.parse.task import parse_cmdline, parse_stat
from fdscope.proc import DEFAULT_ROOT, Proc

# A socket the program has not closed yet (CLOSE_WAIT, or TCP CLOSE after a reset) is a leak
# only if it stays: a busy loop closes it at its next event. Re-read after this long.
CLOSE_RECHECK_S = 0.3

# CPU window taken automatically when a thread is on CPU and none waits: confirms busy polling.
AUTO_SAMPLE = 0.25
SNAPSHOT_INTERVAL = 0.005


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
    sections: which parts to compute and show (default all of model.SECTIONS).
    types: restrict the listed fds (the summary always counts every fd).
    flags: "auto" (fdinfo for every fd up to gather.FLAGS_ALL_MAX fds), "all", or "needed"
    (only epoll fds, path fds and edge-triggered targets)."""
    if flags not in gather.FLAG_MODES:
        raise FdscopeError(f"unknown flags mode {flags!r} "
                           f"(choose from {', '.join(gather.FLAG_MODES)})")
    build = _Build(pid, proc or Proc(), normalize_sections(sections), normalize_types(types),
                   flags)
    # A scan makes ~100,000 tuples and strings (16,000 fds) in no cycles: the cyclic collector
    # would only walk them again and again.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return build.run(sample)
    finally:
        if was_enabled:
            gc.enable()


class _Build:
    """One report: the gathered reads in, the report out."""

    def __init__(self, pid: int, proc: Proc, sections: tuple[str, ...],
                 types: tuple[str, ...] | None, flags: str) -> None:
        self.pid = pid
        self.proc = proc
        self.sections = sections
        self.types = types
        self.flags = flags
        self.arch = os.uname().machine
        self.vanished = 0
        self.fds_read_at = time.monotonic()
        self.rep: InspectReport | None = None

    def run(self, sample: float | None) -> InspectReport:
        thread_of = self._thread_group_leader()
        pid, proc, sections = self.pid, self.proc, self.sections
        need_fds = bool(set(sections) - {"threads"})
        need_threads = bool({"threads", "findings", "io_model"} & set(sections))
        raw_threads = None
        if need_threads and readahead.pending(pid, proc):
            raw_threads = gather.threads(proc, pid)  # while the read-ahead finishes
        raw = readahead.take(pid, proc) or gather.process(proc, pid, self.flags, need_fds)
        task = parse_stat(raw.stat)
        rep = self.rep = InspectReport(
            pid=pid, name=task.comm, cmdline=list(parse_cmdline(raw.cmdline)), state=task.state,
            uid=raw.uid, kernel_thread=task.is_kernel_thread, sections=sections,
            types=self.types)
        rep.summary.threads = task.num_threads
        if thread_of is not None:
            rep.notes.append(f"{thread_of} is a thread id of process {pid} ({task.comm}); the "
                             "threads of a process share its fds, so this is the report for "
                             f"process {pid}")
        self._limits(raw)
        if task.state in ("Z", "X"):
            rep.notes.append(
                f"process {pid} is a zombie: it has exited and holds no fds or threads; its "
                f"parent (pid {task.ppid}) has not reaped it with wait()")
            rep.io_model = IoModel("unknown", f"zombie: exited, waiting for parent {task.ppid} "
                                   "to reap it")
            rep.findings = [Finding("info", "zombie", rep.notes[-1])]
            rep.summary.threads = 0  # the kernel still counts the dead leader's task
            return rep
        if task.is_kernel_thread:
            rep.notes.append(f"pid {pid} is a kernel thread: it has no file descriptors of its "
                             "own and no user-space I/O model")
            rep.io_model = IoModel("unknown", "kernel thread")
            rep.findings = [Finding("info", "kernel_thread", rep.notes[-1])]
            if need_threads:
                try:
                    self._threads(raw_threads or gather.threads(proc, pid))
                except FdscopeError:
                    rep.summary.threads = 0  # exited or unreadable: nothing shown, none counted
                # A kernel thread has no user registers: /proc/PID/syscall prints the zeroed
                # pt_regs ("0 0x0 ...", read(0, 0, 0)); it is in no system call ("none").
                rep.threads = [t._replace(syscall="none", args={}, syscall_nr=None)
                               for t in rep.threads]
            return rep
        try:
            if need_threads:
                self._threads(raw_threads or gather.threads(proc, pid))
            if need_fds:
                self._fds(raw)
            if "io_model" in sections or "findings" in sections:
                self._cpu(raw, sample)
                rep.io_model = classify(rep)
            if "findings" in sections and need_fds:
                self._close_recheck()
        except NoSuchProcess as err:
            raise NoSuchProcess(pid, f"process {pid} exited during the scan") from err
        if self.vanished:
            self._check_still_there()
            rep.notes.append(f"{self.vanished} fd(s)/thread(s) closed or exited during the scan "
                             "and were skipped")
        if "findings" in sections:
            rep.findings = findings_for(rep)

        return rep

    def _thread_group_leader(self) -> int | None:
        """A thread id has a /proc entry too (unlisted): inspect its process instead. Returns
        the thread id given, or None when pid is a process."""
        try:
            leader = self.proc.thread_group_leader(self.pid)
        except (FdscopeError, ValueError):
            return None  # not readable or not parsable: the scan itself says what is wrong
        if leader == self.pid or leader <= 0:
            return None
        readahead.take(self.pid, self.proc)  # read for the thread id: discard
        tid, self.pid = self.pid, leader
        return tid

    def _close_recheck(self) -> None:
        """When enough unclosed sockets for a pile are open, read their links again
        CLOSE_RECHECK_S after the fd table was read (a CPU sample meanwhile counts): the ones
        still open as the same socket are what the program has not closed."""
        rep = self.rep
        assert rep is not None
        unclosed = {e.fd: e.target for e in rep.fds_in_state("CLOSE_WAIT", "CLOSE")
                    if e.socket.proto.startswith("tcp")}
        if len(unclosed) < CLOSE_WAIT_PILE:
            return
        live = self.proc.root == DEFAULT_ROOT
        wait = CLOSE_RECHECK_S - (time.monotonic() - self.fds_read_at) if live else 0.0
        if wait > 0:
            time.sleep(wait)
        now = gather.links(self.proc, self.pid, list(unclosed))
        still = sorted(fd for fd, target in unclosed.items() if now.get(fd) == target)
        rep.close_recheck = {"delay_s": CLOSE_RECHECK_S if live else 0.0, "still_open": still,
                             "closed": len(unclosed) - len(still)}

    def _listen_drops(self, raw: gather.Raw) -> None:
        """The namespace's listen drop counters, read again when an accept queue is full: do
        connections get dropped now?"""
        rep = self.rep
        assert rep is not None
        before = parse_netstat(raw.netstat or "").get("TcpExt", {})
        if "ListenOverflows" not in before:
            return
        drops = {"overflows": before["ListenOverflows"], "drops": before.get("ListenDrops", 0)}
        full = [e for e in rep.fds_in_state("LISTEN") if e.socket.recv_q is not None
                and e.socket.send_q is not None and e.socket.recv_q > e.socket.send_q]
        if full:
            after = parse_netstat(gather.netstat(self.proc, self.pid) or "").get("TcpExt", {})
            drops["overflows_during_scan"] = max(0, after.get("ListenOverflows", 0) -
                                                 drops["overflows"])
            drops["drops_during_scan"] = max(0, after.get("ListenDrops", 0) - drops["drops"])
        rep.listen_drops = drops

    def _partial(self, notes: list[str]) -> None:
        assert self.rep is not None
        if notes:
            self.rep.partial = True
            self.rep.notes.extend(notes)

    def _limits(self, raw: gather.Raw) -> None:
        assert self.rep is not None
        err = raw.errors.get("limits")
        if err is None:
            try:
                nofile = parse_limits(raw.limits or "").nofile
            except ParseError as parse_err:
                err = parse_err
            else:
                self.rep.summary.soft_limit, self.rep.summary.hard_limit = nofile.soft, nofile.hard
                return
        self._partial([f"RLIMIT_NOFILE unknown: {err}"])

    def _threads(self, raw: gather.RawThreads) -> None:
        assert self.rep is not None
        self.vanished += raw.vanished
        self.rep.threads, notes = threads.parse_threads(raw, self.arch)
        self._partial(notes)
        if raw.error is None:
            self.rep.summary.threads = len(self.rep.threads)

    def _fds(self, raw: gather.Raw) -> None:
        rep = self.rep
        assert rep is not None
        self.vanished += raw.vanished
        table = fds.classify(raw.fds, raw.links, raw.stats)
        # The socket of each socket fd, from the net tables.
        inodes = {ino for typ, ino in zip(table.types, table.inodes, strict=True)
                  if typ == "socket"}
        found: dict = {}
        if inodes:
            found, errors = sockets.join(raw.net, inodes, self.pid)  # type: ignore[arg-type]
            self._partial(errors)
            self._listen_queues(found)
            if len(inodes) > len(found):
                self._unlisted_sockets(table, found)
        sets, errors = epoll.parse_sets(raw.epoll)
        self._partial(errors)
        # Flags and offsets from fdinfo: read ahead for small tables, else only where needed.
        want = self._flag_fds(table, sets)
        texts = {fd: raw.fdinfo[fd] for fd in want if fd in raw.fdinfo}
        if len(texts) < len(want):
            more, gone = gather.fdinfo(self.proc, self.pid, [fd for fd in want if fd not in texts])
            texts.update(more)
            self.vanished += gone
            # Closed while the scan read them: not listed, not counted as open.
            table = fds.without(table, {fd for fd in want if fd not in texts})
            want = [fd for fd in want if fd in texts]
        fd_flags, errors = fds.flags(want, texts, self.arch)
        self._partial(errors)
        rep.fds = fds.entries(table, found, fd_flags)
        self.fds_read_at = time.monotonic()
        self._listen_drops(raw)
        fds.summarize(rep.fds, rep.summary)
        identity = gather.Identity(self.proc, self.pid, raw.stats)
        rep.epoll, gone = epoll.build(sets, table, identity)
        self.vanished += gone
        rep.summary.epoll_registrations = sum(len(s.registrations) for s in rep.epoll)
        self._io_uring(table, texts)
        if rep.epoll and identity.reason is not None:
            rep.notes.append(
                f"epoll registrations not verified ({identity.reason}): their status comes "
                "from inode and device, which cannot tell anon-inode files (eventfd, timerfd, "
                "...) apart (verified: false)")
        if len(want) < len(table.fds):
            why = (f"above {gather.FLAGS_ALL_MAX} open fds" if self.flags == "auto"
                   else "with --flags needed")
            rep.notes.append(
                f"flags/pos read for {len(fd_flags)} of {len(table.fds)} fds: {why} fdinfo is "
                "read only for epoll fds, path fds and edge-triggered targets (--flags all reads "
                "every fd)")

    def _io_uring(self, table: fds.Table, texts: dict[int, str]) -> None:
        """Each io_uring fd's ring from its fdinfo (read now when the flags pass did not)."""
        assert self.rep is not None
        ring_fds = [fd for fd, typ in zip(table.fds, table.types, strict=True)
                    if typ == "io_uring"]
        have = {fd: texts[fd] for fd in ring_fds if fd in texts}
        missing = [fd for fd in ring_fds if fd not in have]
        if missing:
            more, gone = gather.fdinfo(self.proc, self.pid, missing)
            have.update(more)
            self.vanished += gone
        self.rep.io_uring = uring.rings(have, self.rep.threads)

    def _unlisted_sockets(self, table: fds.Table, found: dict) -> None:  # type: ignore[type-arg]
        """Sockets the net tables do not list: their protocol from sockfs."""
        rep = self.rep
        assert rep is not None
        missing = {fd: ino for fd, typ, ino in zip(table.fds, table.types, table.inodes,
                                                   strict=True)
                   if typ == "socket" and ino not in found}
        named = sockets.unlisted(gather.socket_protocols(self.proc, self.pid, missing))
        for fd, info in named.items():
            found[missing[fd]] = info
        closed = sum(1 for info in named.values() if info.state == "CLOSE")
        others = len(named) - closed
        if closed:
            rep.notes.append(
                f"{closed} TCP socket(s) not in the target's /proc/PID/net tables: closed (reset "
                "by the peer, never connected, or bound without listen()), or from another "
                "network namespace; state CLOSE, protocol from sockfs")
        if others:
            rep.notes.append(
                f"{others} socket(s) of a family the /proc/PID/net tables do not list, or not "
                "bound: protocol from sockfs (system.sockprotoname), no state or addresses")
        if len(missing) > len(named):
            rep.notes.append(
                f"{len(missing) - len(named)} socket(s) not in the target's /proc/PID/net "
                "tables and their protocol unreadable (closed meanwhile?): proto unknown")

    def _flag_fds(self, table: fds.Table, sets: dict[int, list[epoll.Reg]]) -> list[int]:
        """The fds whose flags the report shows: all up to FLAGS_ALL_MAX open fds (or always,
        with --flags all), else epoll fds, path fds and edge-triggered targets."""
        n = len(table.fds)
        if self.flags == "all" or (self.flags == "auto" and n <= gather.FLAGS_ALL_MAX):
            return table.fds
        want = {fd for fd, typ in zip(table.fds, table.types, strict=True)
                if typ in fds.PATH_TYPES or typ == "epoll"}
        for regs in sets.values():
            want.update(tfd for tfd, mask, *_ in regs if mask & EPOLLET)
        return sorted(fd for fd in want if table.row(fd) is not None)

    def _listen_queues(self, found: dict) -> None:  # type: ignore[type-arg]
        """LISTEN sockets' backlog (send_q) from sock_diag, as ss does, when netns is shared."""
        rep = self.rep
        assert rep is not None
        rep.net_namespace_shared = gather.same_netns(self.proc, self.pid)
        listening = sockets.listeners(found)
        if not listening["inet"] and not listening["unix"]:
            return
        if not rep.net_namespace_shared:
            rep.notes.append("target is in another network namespace: LISTEN backlog (send_q) "
                             "unknown (sock_diag answers only for fdscope's own namespace)")
            return
        for kind, inodes in listening.items():
            if not inodes:
                continue
            try:
                sockets.with_queues(found, gather.listen_queues(kind, inodes))
            except OSError as err:
                rep.notes.append(f"sock_diag ({kind}) failed, LISTEN backlog unknown: {err}")

    def _cpu(self, raw: gather.Raw, sample: float | None) -> None:
        rep = self.rep
        assert rep is not None
        hz = os.sysconf("SC_CLK_TCK")
        if sample is None and needs_cpu_sample(rep):
            sample = AUTO_SAMPLE
            rep.notes.append(f"a thread was on CPU and none waited: CPU sampled for {AUTO_SAMPLE} s")
        if sample:
            taken = gather.sample(self.proc, self.pid, [t.tid for t in rep.threads], sample,
                                  SNAPSHOT_INTERVAL)
            rep.threads, rep.cpu = threads.apply_sample(rep.threads, taken, hz, self.arch,
                                                        WAIT_CALLS)
        else:
            rep.cpu = threads.lifetime_cpu(raw.stat, gather.uptime(self.proc), hz)

    def _check_still_there(self) -> None:
        try:
            state = parse_stat(self.proc.read_text(self.pid, "stat", pid=self.pid)).state
        except (NoSuchProcess, ProcGone) as err:
            raise NoSuchProcess(self.pid, f"process {self.pid} exited during the scan") from err
        if state in ("Z", "X"):
            raise NoSuchProcess(self.pid, f"process {self.pid} exited during the scan")
