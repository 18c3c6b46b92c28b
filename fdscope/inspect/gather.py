"""Every read `fdscope inspect` makes of a process, and nothing else: text in, no parsing beyond
what decides the next read.

`process()` is the first pass: stat, cmdline, limits, the fd links, a stat() of each path fd,
the epoll fds' interest lists, the /proc/PID/net tables (when there are sockets) and fdinfo
(flags, pos) of every fd up to FLAGS_ALL_MAX open fds. The console entry point runs the same
call in a thread before click is imported (fdscope.inspect.readahead). The other functions are
the reads a report asks for afterwards: fdinfo it still lacks, threads, a CPU sample, sock_diag
backlogs, file identities. Read-only, through fdscope.proc.Proc: the target is never written
to, signalled or ptraced. Races (an fd closed, a thread gone mid-read) are counted in
`vanished`, never raised; the report checks once at the end that the process still exists.
"""

from __future__ import annotations

import errno
import os
import time
from itertools import compress

from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ProcGone
from fdscope.parse.task import parse_stat  # not on first use: the read-ahead thread runs this
from fdscope.proc import DEFAULT_ROOT, Proc

# Annotations only: this module is imported before click, on the way to the read-ahead.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

# fs/eventpoll.c: anon_inode_getfile("[eventpoll]", ...), so an epoll fd's link reads so.
EPOLL_LINK = "anon_inode:[eventpoll]"
# Most sockets are TCP or unix: those first, so a join can stop once every inode is found.
NET_TABLES = ("tcp", "unix", "tcp6", "udp", "udp6", "raw", "raw6", "netlink", "packet")
# Up to this many open fds, fdinfo (flags, pos) is read for every fd; above, only where the
# findings need it (epoll fds, path fds, edge-triggered targets): one open+read per fd costs
# several readlinks.
FLAGS_ALL_MAX = 4096
FLAG_MODES = ("auto", "all", "needed")


class Raw:
    """What the first pass read of one process. Texts as the kernel wrote them; `stats` holds
    (st_mode, st_ino, st_dev) of each path fd and of one fd per pseudo-filesystem (sockfs,
    pipefs, anon_inodefs) when there are epoll fds; `errors` what could not be read and why."""

    __slots__ = ("pid", "root", "stat", "cmdline", "uid", "limits", "fds", "links", "stats",
                 "epoll", "net", "netstat", "fdinfo", "vanished", "errors")

    def __init__(self, pid: int, root: str) -> None:
        self.pid = pid
        self.root = root
        self.stat = ""
        self.cmdline = b""
        self.uid: int | None = None
        self.limits: str | None = None
        self.fds: list[int] = []
        self.links: list[str] = []
        self.stats: dict[int, tuple[int, int, int]] = {}
        self.epoll: dict[int, str | None] = {}  # epfd -> fdinfo text (None: closed meanwhile)
        self.net: list[tuple[str, str]] = []  # (table, text) of the tables that exist
        self.netstat: str | None = None  # /proc/PID/net/netstat (TcpExt counters)
        self.fdinfo: dict[int, str] = {}
        self.vanished = 0
        self.errors: dict[str, FdscopeError] = {}


def process(proc: Proc, pid: int, flags: str = "auto", fds: bool = True) -> Raw:
    """The first pass over pid (see the module docstring). Raises NoSuchProcess or AccessDenied
    when the process or its fd table cannot be read at all."""
    raw = Raw(pid, proc.root)
    raw.stat = proc.read_text(pid, "stat", pid=pid)
    try:
        _rest_of_process(proc, pid, flags, fds, raw, parse_stat(raw.stat))
    except NoSuchProcess as err:
        raise NoSuchProcess(pid, f"process {pid} exited during the scan") from err
    return raw


def _rest_of_process(proc: Proc, pid: int, flags: str, fds: bool, raw: Raw, task: Any) -> None:
    try:
        raw.cmdline = proc.read_bytes(pid, "cmdline", pid=pid)
    except (ProcGone, AccessDenied):
        pass
    try:
        raw.uid = proc.stat(pid, pid=pid).st_uid
    except FdscopeError:
        pass
    try:
        raw.limits = proc.read_text(pid, "limits", pid=pid)
    except (ProcGone, AccessDenied) as err:
        raw.errors["limits"] = err
    if not fds or task.state in ("Z", "X") or task.is_kernel_thread:
        return  # a zombie or kernel thread holds no fds of its own
    raw.fds, raw.links, raw.vanished = fd_links(proc, pid)
    epfds = [fd for fd, link in zip(raw.fds, raw.links, strict=True) if link == EPOLL_LINK]
    paths = [fd for fd, link in zip(raw.fds, raw.links, strict=True) if link[:1] == "/"]
    raw.stats = stat_fds(proc, pid, paths + (_one_per_pseudo_fs(raw, epfds) if epfds else []))
    n = len(raw.fds)
    every = flags == "all" or (flags == "auto" and n <= FLAGS_ALL_MAX)
    fdinfo = raw.fds if every else sorted(set(epfds + paths))
    tables = NET_TABLES if any(link[:8] == "socket:[" for link in raw.links) else ()
    names = [f"fdinfo/{fd}" for fd in fdinfo] + [f"net/{table}" for table in tables] + \
        (["net/netstat"] if tables else [])
    texts = _read_many(proc, pid, names)
    raw.fdinfo = {fd: texts[name] for fd, name in zip(fdinfo, names, strict=False)
                  if name in texts}
    raw.epoll = {epfd: raw.fdinfo.get(epfd) for epfd in epfds}
    raw.vanished += sum(1 for epfd in epfds if epfd not in raw.fdinfo)
    raw.net = [(table, texts[f"net/{table}"]) for table in tables if texts.get(f"net/{table}")]
    raw.netstat = texts.get("net/netstat")


def fd_count(proc: Proc, pid: int) -> int:
    """Open fds of pid from stat(/proc/PID/fd).st_size (Linux 6.2+, fs/proc/fd.c
    proc_fd_getattr; 0 before, and for a copied tree, which is not procfs)."""
    return proc.stat(pid, "fd", pid=pid).st_size if proc.root == DEFAULT_ROOT else 0


def fd_links(proc: Proc, pid: int) -> tuple[list[int], list[str], int]:
    """(fds ascending, their link texts, how many vanished between the listing and the reads).

    open() takes the lowest free number, so fd tables are mostly dense: when the kernel gives
    the count, fds 0..count-1 are read without listing the directory (a listing costs a third
    of the readlinks: fs/proc/fd.c proc_readfd_common instantiates a dentry per fd). Each hole
    found there means one fd above the count, mostly just above (a daemon that closed stdin or
    a few fds after start-up): as many names above are read, then a few more. The guess stands
    only when the reads found `count` fds and the count did not change meanwhile; else the
    directory is listed. fdscope's own table changes as it reads (the directory fd takes a hole): it is
    always listed."""
    count = fd_count(proc, pid) if pid != os.getpid() else 0
    if count:
        links, holes = proc.readlink_list(pid, "fd", names=fd_names(0, count), pid=pid)
        missing = holes
        for window in (holes, 4 * holes + 64):  # just above the count, then a little further
            if missing > 0:
                more, gone = proc.readlink_list(pid, "fd", names=fd_names(len(links), window),
                                                pid=pid)
                links += more
                missing -= window - gone
        if missing == 0 and fd_count(proc, pid) == count:
            if not holes:
                return list(range(count)), links, 0  # type: ignore[return-value]
            # (a link text is never empty: d_path() gives at least "/")
            return list(compress(range(len(links)), links)), list(filter(None, links)), 0
        listed = proc.listdir(pid, "fd", pid=pid)
        known = {str(fd): link for fd, link in enumerate(links) if link is not None}
        more_links, gone = proc.readlinks(pid, "fd", names=[n for n in listed if n not in known],
                                          pid=pid)
        found = {n: known.get(n) or more_links[n] for n in listed
                 if n in known or n in more_links}
    else:
        found, gone = proc.readlinks(pid, "fd", names=proc.listdir(pid, "fd", pid=pid), pid=pid)
    # procfs lists fds in ascending order (fs/proc/fd.c); a copied tree may not. Names that are
    # not ASCII digits are no fds (a damaged or fake tree).
    pairs = sorted((int(name), link) for name, link in found.items()
                   if name.isascii() and name.isdigit())
    return [fd for fd, _ in pairs], [link for _, link in pairs], gone


_names: list[str] = []
NAMES_KEPT = 1 << 16


def fd_names(start: int, n: int) -> list[str]:
    """["start", ..., "start+n-1"]: fd numbers as names, the first NAMES_KEPT made once (a scan
    of the host asks for the same ones for every process)."""
    global _names
    if start + n > NAMES_KEPT:
        return list(map(str, range(start, start + n)))
    if len(_names) < start + n:
        _names = list(map(str, range(min(NAMES_KEPT, max(start + n, 2 * len(_names))))))
    return _names[start:start + n]


def links(proc: Proc, pid: int, fds: list[int]) -> dict[int, str]:
    """The link text of each fd still open (closed ones are left out)."""
    texts, _gone = proc.readlinks(pid, "fd", names=[str(fd) for fd in fds], pid=pid)
    return {int(name): text for name, text in texts.items()}


def stat_fds(proc: Proc, pid: int, fds: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """fd -> (st_mode, st_ino, st_dev) of the file each fd is open as (stat() follows the
    /proc/PID/fd link); fds closed meanwhile or unreadable are left out."""
    out: dict[int, tuple[int, int, int]] = {}
    for fd in fds:
        try:
            st = proc.stat(pid, "fd", fd, pid=pid)
        except (ProcGone, AccessDenied):
            continue
        out[fd] = (st.st_mode, st.st_ino, st.st_dev)
    return out


def _one_per_pseudo_fs(raw: Raw, epfds: list[int]) -> list[int]:
    """The first socket fd, the first pipe fd and the first epoll fd: one stat() each gives the
    device of sockfs and pipefs and the inode every anon_inode file shares (fs/anon_inodes.c)."""
    out = [epfds[0]]
    for prefix in ("socket:[", "pipe:["):
        for fd, link in zip(raw.fds, raw.links, strict=True):
            if link.startswith(prefix):
                out.append(fd)
                break
    return out


def fdinfo(proc: Proc, pid: int, fds: Iterable[int]) -> tuple[dict[int, str], int]:
    """fd -> text of /proc/PID/fdinfo/FD, and how many vanished (closed meanwhile)."""
    fds = list(fds)
    texts, gone = proc.read_many(pid, "fdinfo", names=list(map(str, fds)), pid=pid)
    return {fd: texts[str(fd)] for fd in fds if str(fd) in texts}, gone


def _read_many(proc: Proc, pid: int, names: list[str]) -> dict[str, str]:
    """Texts of `names` below /proc/PID in one batch; what is absent (a net table of a protocol
    not loaded, an fd closed meanwhile) or hidden is left out."""
    if not names:
        return {}
    try:
        return proc.read_many(pid, names=names, pid=pid)[0]
    except AccessDenied:
        out = {}
        for name in names:
            try:
                out[name] = proc.read_text(pid, name, pid=pid)
            except (ProcGone, AccessDenied):
                continue
        return out


# -- threads -------------------------------------------------------------------------------


class RawThreads:
    """Per thread (tid, stat text, wchan text | None, syscall text | None (unreadable)); how many
    vanished; the error when the task list itself was unreadable."""

    __slots__ = ("rows", "vanished", "error")

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, str | None, str | None]] = []
        self.vanished = 0
        self.error: FdscopeError | None = None


def threads(proc: Proc, pid: int) -> RawThreads:
    out = RawThreads()
    try:
        names = proc.listdir(pid, "task", pid=pid)
    except AccessDenied as err:
        out.error = err
        return out
    for tid in sorted(int(n) for n in names if n.isascii() and n.isdigit()):
        try:
            stat = proc.read_text(pid, "task", tid, "stat", pid=pid)
        except ProcGone:
            out.vanished += 1
            continue
        try:
            wchan: str | None = proc.read_text(pid, "task", tid, "wchan", pid=pid)
        except (ProcGone, AccessDenied):
            wchan = None
        try:
            syscall: str | None = proc.read_text(pid, "task", tid, "syscall", pid=pid)
        except AccessDenied:
            syscall = None
        except ProcGone:
            out.vanished += 1
            continue
        out.rows.append((tid, stat, wchan, syscall))
    return out


class Sample:
    """A CPU sample: the process's stat before and after, each thread's stat and status at both
    ends, and
    every thread's syscall text at each snapshot (None where unreadable), over `elapsed` s."""

    __slots__ = ("before", "after", "starts", "ends", "status_starts", "status_ends",
                 "snapshots", "elapsed", "io_before", "io_after")

    def __init__(self) -> None:
        self.before = self.after = ""
        self.starts: dict[int, str] = {}  # task stat
        self.ends: dict[int, str] = {}
        self.status_starts: dict[int, str] = {}  # task status (voluntary_ctxt_switches)
        self.status_ends: dict[int, str] = {}
        self.snapshots: list[dict[int, str | None]] = []
        self.elapsed = 0.0
        self.io_before: str | None = None  # /proc/PID/io (None: unreadable)
        self.io_after: str | None = None


def sample(proc: Proc, pid: int, tids: list[int], seconds: float, interval: float) -> Sample:
    """Read every thread's syscall file every `interval` s for `seconds`, between two reads of
    the CPU times: a poor man's wait profiler, read-only (one snapshot of a loaded event loop
    often catches it running, not in epoll_wait)."""
    out = Sample()
    out.before = proc.read_text(pid, "stat", pid=pid)
    out.io_before = _io(proc, pid)
    t0 = time.monotonic()
    out.starts = _task_files(proc, pid, tids, "stat")
    out.status_starts = _task_files(proc, pid, tids, "status")
    deadline = t0 + seconds
    while True:
        out.snapshots.append(_task_files(proc, pid, tids, "syscall", keep_denied=True))
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    out.after = proc.read_text(pid, "stat", pid=pid)
    out.io_after = _io(proc, pid)
    out.ends = _task_files(proc, pid, tids, "stat")
    out.status_ends = _task_files(proc, pid, tids, "status")
    out.elapsed = time.monotonic() - t0
    return out


def _io(proc: Proc, pid: int) -> str | None:
    """/proc/PID/io (needs ptrace read access, as the fd table does), or None."""
    try:
        return proc.read_text(pid, "io", pid=pid)
    except (ProcGone, AccessDenied):
        return None


def _task_files(proc: Proc, pid: int, tids: list[int], name: str,
                keep_denied: bool = False) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for tid in tids:
        try:
            out[tid] = proc.read_text(pid, "task", tid, name, pid=pid)
        except ProcGone:
            continue
        except AccessDenied:
            if keep_denied:
                out[tid] = None
    return out


def uptime(proc: Proc) -> str | None:
    try:
        return proc.read_text("uptime")
    except FdscopeError:
        return None


# -- network namespace ------------------------------------------------------------------------


def socket_protocols(proc: Proc, pid: int, fds: Iterable[int]) -> dict[int, str]:
    """fd -> the protocol name sockfs gives each socket fd (the system.sockprotoname xattr,
    net/socket.c sockfs_xattr_get: "TCP", "UDPv6", "UNIX-STREAM", ...), for sockets the net
    tables do not list; fds closed meanwhile or unreadable are left out."""
    out: dict[int, str] = {}
    for fd in fds:
        try:
            name = proc.getxattr(pid, "fd", fd, name="system.sockprotoname", pid=pid)
        except FdscopeError:
            continue
        out[fd] = name.rstrip(b"\0").decode("ascii", "replace")
    return out


def netstat(proc: Proc, pid: int) -> str | None:
    """/proc/PID/net/netstat: the target's network namespace's protocol counters."""
    try:
        return proc.read_text(pid, "net", "netstat", pid=pid)
    except (ProcGone, AccessDenied):
        return None


def same_netns(proc: Proc, pid: int) -> bool:
    """True when pid shares fdscope's network namespace (sock_diag answers only for that one)."""
    try:
        theirs = proc.stat(pid, "ns", "net", pid=pid)
        ours = os.stat("/proc/self/ns/net")
    except (FdscopeError, OSError):
        return False
    return (theirs.st_ino, theirs.st_dev) == (ours.st_ino, ours.st_dev)


def listen_queues(kind: str, inodes: list[int]) -> dict[int, tuple[int, int]]:
    """inode -> (accept queue, backlog) of TCP ("inet") or unix listeners, from sock_diag as
    ss(8) reads them; raises OSError when the query fails."""
    from fdscope import netdiag

    query = netdiag.inet_listen_queues if kind == "inet" else netdiag.unix_listen_queues
    return query(inodes)


# -- file identity ----------------------------------------------------------------------------


# kcmp(2) errors that mean it cannot be used at all for this process (not one answer's news).
_KCMP_REFUSED = {
    errno.EPERM: "refused (EPERM): it needs the ptrace read access /proc/PID/fd needs, and a "
                 "seccomp filter or LSM may forbid it",
    errno.EACCES: "refused (EACCES) by a security module",
    errno.ENOSYS: "missing from this kernel (CONFIG_KCMP off)",
    errno.EINVAL: "unable to compare epoll registrations on this kernel (before Linux 4.13)",
}


class Identity:
    """Which open file an fd or an epoll registration is, asked of the kernel: kcmp(2) (kernel/
    kcmp.c: KCMP_FILE, and KCMP_EPOLL_TFD for a registered file), else (st_ino, st_dev) from
    stat() (sockets and pipes from their link and one stat per filesystem, given in `stats`),
    which cannot tell anon-inode files apart. `reason` says why kcmp is not used, once known."""

    def __init__(self, proc: Proc, pid: int, stats: dict[int, tuple[int, int, int]]) -> None:
        self.proc = proc
        self.pid = pid
        self.keys = {fd: (ino, dev) for fd, (_mode, ino, dev) in stats.items()}
        # kcmp takes live pids: a copied or fake proc tree has none to compare.
        self.reason: str | None = None if proc.root == DEFAULT_ROOT else \
            f"{proc.root} is not the live /proc"

    def kcmp(self, items: list[tuple[int, ...]]) -> list[int] | None:
        """kcmp(2) of pid's fds for each item ((fd1, fd2) or (fd, epfd, tfd, toff), as
        fdscope.speedups' kcmp_many): results or -errno; None when kcmp cannot be used."""
        if self.reason is not None:
            return None
        from fdscope import speedups

        codes = speedups.backend.kcmp_many(self.pid, items)
        refused = next((-code for code in codes if -code in _KCMP_REFUSED), None)
        if refused is not None:
            self.reason = f"kcmp(2) {_KCMP_REFUSED[refused]}"
            return None
        return codes

    def key(self, fd: int) -> tuple[int, int] | None:
        if fd not in self.keys:
            st = stat_fds(self.proc, self.pid, (fd,)).get(fd)
            self.keys[fd] = None if st is None else (st[1], st[2])
        return self.keys[fd]
