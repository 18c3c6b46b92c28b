"""Read-ahead for `fdscope inspect PID`: the kernel-side reads start before click is imported.

Importing click and the inspect code takes ~50 ms of CPU on one core; reading 16,000 fd links,
the /proc/PID/net tables and the epoll interest lists takes about as long in the kernel, with
the GIL released (the C readlinkat/read loops of fdscope.speedups). The console entry point
(fdscope.cli.entry) starts this read in a thread when the command line starts with
`inspect <digits>`; click still parses the command line, and inspect uses the result only for
the pid it parsed (take()). Anything unexpected, and the scan reads for itself. Read-only, as
every read of fdscope: links and files below /proc/PID through fdscope.proc.Proc.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from fdscope.proc import DEFAULT_ROOT, Proc
from fdscope.speedups import C

# Most sockets are TCP or unix: those first, so a scan can stop early once every inode is found.
NET_TABLES = ("tcp", "unix", "tcp6", "udp", "udp6", "raw", "raw6", "netlink", "packet")
# fs/eventpoll.c: anon_inode_getfile("[eventpoll]", ...), so the link reads like this.
EPOLL_LINK = "anon_inode:[eventpoll]"
# Below this many fds the read-ahead saves nothing worth a thread.
MIN_FDS = 2048
# Up to this many open fds inspect reads flags/pos from every fd's fdinfo (one open+read per
# fd, 3-4x a readlinkat: measured), so the read-ahead reads them too; above, only where
# findings need them (fdscope.inspect FLAGS_ALL_MAX).
FLAGS_ALL_MAX = 4096


class Raw(NamedTuple):
    """What the read-ahead read: the links of fds 0..count-1 (None where there is no such fd:
    `gone` of them), the net tables [(table, text)], epfd -> fdinfo text (None: closed
    meanwhile), and fd -> fdinfo text of every fd when there are at most FLAGS_ALL_MAX (else
    empty)."""

    count: int
    links: list[str | None]
    gone: int
    net: list[tuple[str, str]]
    epoll: dict[int, str | None]
    fdinfo: dict[int, str]


def fd_count(proc: Proc, pid: int) -> int:
    """Open fds of pid from stat(/proc/PID/fd).st_size (Linux 6.2+, fs/proc/fd.c
    proc_fd_getattr; 0 before, and for a copied tree, which is not procfs)."""
    return proc.stat(pid, "fd", pid=pid).st_size if proc.root == DEFAULT_ROOT else 0


def net_texts(proc: Proc, pid: int) -> list[tuple[str, str]]:
    """[(table, text)] of the target's own /proc/PID/net tables that exist and are readable."""
    from fdscope.errors import AccessDenied, ProcGone

    try:
        found, _absent = proc.read_many(pid, "net", names=NET_TABLES, pid=pid)
    except AccessDenied:
        found = {}
        for table in NET_TABLES:
            try:
                found[table] = proc.read_text(pid, "net", table, pid=pid)
            except (ProcGone, AccessDenied):
                continue  # absent (no IPv6, module not loaded) or hidden
    return [(table, found[table]) for table in NET_TABLES if found.get(table)]


def epoll_texts(proc: Proc, pid: int, epfds: Sequence[int]) -> dict[int, str | None]:
    """epfd -> text of its fdinfo (None: closed meanwhile)."""
    found, _gone = proc.read_many(pid, "fdinfo", names=list(map(str, epfds)), pid=pid)
    return {epfd: found.get(str(epfd)) for epfd in epfds}


# errno of an fd or task that went away between the count and the read (counted, not raised)
VANISHED = frozenset({errno.ENOENT, errno.ESRCH})
# errno of a net table that is absent (no IPv6, module not loaded) or hidden: left out
ABSENT = VANISHED | {errno.EACCES, errno.EPERM}


def read(proc: Proc, pid: int) -> Raw | None:
    """Links of fds 0..count-1, the net tables and the epoll fdinfo, or None for a small
    table (not worth it), or when a read failed in a way the scan must report (it reads again
    and raises fdscope's error)."""
    count = fd_count(proc, pid)
    if count < MIN_FDS:
        return None
    fdinfo_all = count <= FLAGS_ALL_MAX
    if C is None:
        return _read_each(proc, pid, count, fdinfo_all)
    # One thread and one C call: a second thread would take CPU from the main thread's
    # imports (measured: medians 155 against 177 ms), which are the longer of the two paths,
    # and every return to Python here waits for the GIL (up to the 5 ms switch interval).
    got = proc.read_ahead(pid, count, list(NET_TABLES), fdinfo_all)
    if got is None:
        return None
    (links, link_errors), epfds, (epoll, epoll_errors), (net, net_errors), info = got
    failed = link_errors + epoll_errors + (info[1] if info is not None else [])
    if not VANISHED.issuperset(err for _i, err in failed) or \
            not ABSENT.issuperset(err for _i, err in net_errors):
        return None
    fdinfo = {fd: text for fd, text in enumerate(info[0]) if text is not None} if info else {}
    return Raw(count, links, len(link_errors),
               [(table, text) for table, text in zip(NET_TABLES, net, strict=True) if text],
               dict(zip(epfds, epoll, strict=True)), fdinfo)


def _read_each(proc: Proc, pid: int, count: int, fdinfo_all: bool) -> Raw:
    """read() without the C module: one Proc call per kind of file (the C call's twin)."""
    names = list(map(str, range(count)))
    found, gone = proc.readlinks(pid, "fd", names=names, pid=pid)
    links = list(map(found.get, names))
    epoll = epoll_texts(proc, pid, [fd for fd, link in enumerate(links) if link == EPOLL_LINK])
    net = net_texts(proc, pid)
    fdinfo: dict[int, str] = {}
    if fdinfo_all:
        texts, _gone = proc.read_many(pid, "fdinfo", names=names, pid=pid)
        fdinfo = {int(name): text for name, text in texts.items()}
    return Raw(count, links, gone, net, epoll, fdinfo)


class Background:
    """fn(*args) in a thread; result() joins it and returns its value or raises its error.
    Only for work that spends its time in syscalls without the GIL (the C readlinkat loop,
    reads of /proc files the kernel generates): Python code would just take turns."""

    def __init__(self, fn: Any, *args: Any, name: str = "fdscope-scan") -> None:
        import threading

        self._out: tuple[bool, Any] = (False, None)

        def run() -> None:
            try:
                self._out = (True, fn(*args))
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self._out = (False, err)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        ok, value = self._out
        if not ok:
            raise value
        return value


_pending: dict[str, Any] = {}


def inspect_pid(argv: Sequence[str]) -> int | None:
    """The PID of a command line of the form `inspect PID ...` (argv without the program name),
    else None. A hint only: click parses the command line, and take() checks the pid."""
    if len(argv) < 2 or argv[0] != "inspect" or not argv[1].isdigit():
        return None
    return int(argv[1])


def start(argv: Sequence[str]) -> bool:
    """Start reading ahead for `inspect PID ...` (argv without the program name); False when
    argv is not of that form or there is nothing to gain (no C module, not Linux)."""
    pid = inspect_pid(argv)
    if pid is None or C is None or not os.path.isdir("/proc/self"):
        return False
    proc = Proc()
    _pending.update(pid=pid, root=proc.root,
                    job=Background(read, proc, pid, name="fdscope-readahead"))
    return True


def pending(pid: int, proc: Proc) -> bool:
    """True when a read-ahead for pid from proc's root was started and not taken yet."""
    return _pending.get("pid") == pid and _pending.get("root") == proc.root and "job" in _pending


def take(pid: int, proc: Proc) -> Raw | None:
    """The read-ahead for pid from proc's root, once; None when there is none or it failed
    (the scan then reads again and reports the error)."""
    if not pending(pid, proc):
        return None
    try:
        return _pending.pop("job").result()  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - see the docstring
        return None
