"""Read-ahead for `fdscope inspect PID`: the kernel-side reads start before click is imported.

Importing click and the inspect code takes ~35 ms of CPU on one core; reading 16,000 fd links,
the /proc/PID/net tables and the epoll interest lists takes ~40 ms in the kernel, with the GIL
released (the C loops of fdscope.speedups). The console entry point (fdscope.cli.entry) starts
this read in a thread when the command line starts with `inspect <digits>`, in two stages
(stages()): the links first, which the scan classifies while the thread reads the tables.
click still parses the command line, and inspect uses the result only for the pid it parsed
(take(), take_rest()). Anything unexpected, and the scan reads for itself. Read-only, as every
read of fdscope: links and files below /proc/PID through fdscope.proc.Proc.
"""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from collections.abc import Iterator, Sequence

from fdscope.proc import DEFAULT_ROOT, Proc
from fdscope.speedups import C

# Imported before the read-ahead starts: nothing here imports typing (~4 ms), so the rows
# below are collections.namedtuple classes, with their field types in the docstrings.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


class Raw(namedtuple("Raw", "count links gone epfds")):
    """The read-ahead's first stage: the links of fds 0..count-1 (links: list[str | None], None
    where there is no such fd: `gone` of them) and the epoll fds among them (epfds: list[int])."""

    __slots__ = ()


class Rest(namedtuple("Rest", "net epoll fdinfo")):
    """Its second stage: the net tables (net: list[tuple[str, str]], (table, text)), epfd ->
    fdinfo text (epoll: dict[int, str | None], None: closed meanwhile), and fd -> fdinfo text
    of every fd when there are at most FLAGS_ALL_MAX, else empty (fdinfo: dict[int, str])."""

    __slots__ = ()


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


def stages(proc: Proc, pid: int) -> Iterator[Any]:
    """The read-ahead in two stages, so that the scan starts on the links while the kernel
    writes the tables: first Raw (None: a small table, not worth it, or a read failed in a way
    the scan must report: it reads again and raises fdscope's error), then Rest."""
    count = fd_count(proc, pid)
    if count < MIN_FDS:
        yield None
        return
    if C is None:  # Proc's Python reads: the twin of the C call
        names = list(map(str, range(count)))
        found, gone = proc.readlinks(pid, "fd", names=names, pid=pid)
        links = list(map(found.get, names))
        epfds = [fd for fd, link in enumerate(links) if link == EPOLL_LINK]
        yield Raw(count, links, gone, epfds)
    else:
        got = proc.read_ahead(pid, count)
        if got is None:
            yield None
            return
        (links, errors), epfds = got
        if not VANISHED.issuperset(err for _i, err in errors):
            yield None
            return
        yield Raw(count, links, len(errors), epfds)
        # Each return from a C call waits for the GIL (up to the 5 ms switch interval) while
        # the main thread imports or scans: the second stage is one more call, not three.
    epoll = [f"fdinfo/{fd}" for fd in epfds]
    tables = [f"net/{table}" for table in NET_TABLES]
    every = [f"fdinfo/{fd}" for fd in range(count)] if count <= FLAGS_ALL_MAX else []
    found, _gone = proc.read_many(pid, names=list(dict.fromkeys(epoll + tables + every)),
                                  pid=pid)
    yield Rest([(table, found[name]) for table, name in zip(NET_TABLES, tables, strict=True)
                if found.get(name)],
               dict(zip(epfds, map(found.get, epoll), strict=True)),
               {fd: found[name] for fd, name in enumerate(every) if name in found})


def read(proc: Proc, pid: int) -> tuple[Raw, Rest] | None:
    """Both stages at once, in this thread (see stages())."""
    it = stages(proc, pid)
    raw = next(it)
    return None if raw is None else (raw, next(it))


class Background:
    """fn(*args) in a thread; result() joins it and returns its value or raises its error.
    With staged=True fn is a generator function, and result(i) waits for its i-th value only.
    Only for work that spends its time in syscalls without the GIL (the C readlinkat loop,
    reads of /proc files the kernel generates): Python code would just take turns."""

    def __init__(self, fn: Any, *args: Any, name: str = "fdscope-scan",
                 staged: bool = False) -> None:
        import threading

        self._values: list[Any] = []
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._more = threading.Condition()

        def run() -> None:
            try:
                for value in fn(*args) if staged else [fn(*args)]:
                    with self._more:
                        self._values.append(value)
                        self._more.notify_all()
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self._error = err
            finally:
                with self._more:
                    self._done.set()
                    self._more.notify_all()

        threading.Thread(target=run, name=name, daemon=True).start()

    def result(self, stage: int = 0) -> Any:
        with self._more:
            self._more.wait_for(lambda: len(self._values) > stage or self._done.is_set())
        if len(self._values) > stage:
            return self._values[stage]
        if self._error is not None:
            raise self._error
        raise LookupError(f"no stage {stage}")


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
                    job=Background(stages, proc, pid, name="fdscope-readahead", staged=True))
    return True


def pending(pid: int, proc: Proc) -> bool:
    """True when a read-ahead for pid from proc's root was started and not taken yet."""
    return _pending.get("pid") == pid and _pending.get("root") == proc.root and "job" in _pending


def take(pid: int, proc: Proc) -> Raw | None:
    """The read-ahead's first stage for pid from proc's root, once (take_rest() then gives
    the second); None when there is none or it failed (the scan then reads again and reports
    the error)."""
    if not pending(pid, proc):
        return None
    job = _pending.pop("job")
    try:
        raw = job.result(0)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    if raw is not None:
        _pending["rest"] = job
    return raw  # type: ignore[no-any-return]


def take_rest(pid: int, proc: Proc) -> Rest | None:
    """The second stage, once, after take() gave the first; None when it failed (the scan
    then reads the tables itself)."""
    if _pending.get("pid") != pid or _pending.get("root") != proc.root or "rest" not in _pending:
        return None
    try:
        return _pending.pop("rest").result(1)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - see take()
        return None
