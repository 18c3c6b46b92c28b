"""System-wide and per-process fd limits, with a verdict on each figure.

`gather_limits()` reads everything through fdscope.proc (and verifies select()'s FD_SETSIZE
live in fdscope's own process); `LimitsReport.to_json()` is the `fdscope.limits/1` document.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import select
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fdscope.errors import AccessDenied, ProcGone
from fdscope.model import Finding
from fdscope.parse.limits import parse_limits
from fdscope.parse.sysctl import FileNr, parse_file_nr, parse_int
from fdscope.parse.task import parse_stat
from fdscope.proc import Proc

SCHEMA = "fdscope.limits/1"

# glibc's fd_set holds FD_SETSIZE (1024) bits: <bits/typesizes.h> __FD_SETSIZE, select(2) BUGS.
GLIBC_FD_SETSIZE = 1024

SYSCTLS = {
    "file_max": "fs/file-max",
    "nr_open": "fs/nr_open",
    "epoll_max_user_watches": "fs/epoll/max_user_watches",
    "somaxconn": "net/core/somaxconn",
    "inotify_max_user_watches": "fs/inotify/max_user_watches",
    "inotify_max_user_instances": "fs/inotify/max_user_instances",
}


@dataclass(frozen=True)
class FdSetSize:
    """FD_SETSIZE as this system's C library defines it, and how fdscope learned it."""

    value: int
    verified: bool
    how: str


@dataclass(frozen=True)
class ProcessFds:
    """A process's fd limits and how many fds it holds."""

    pid: int
    name: str
    is_self: bool
    soft: int | None
    hard: int | None
    open_fds: int
    highest_fd: int | None
    kind: str = "process"  # process, zombie or kernel_thread

    @property
    def headroom(self) -> int | None:
        return None if self.soft is None else self.soft - self.open_fds


@dataclass(frozen=True)
class LimitsReport:
    """Everything `fdscope limits` reports, with a verdict per figure."""

    kernel: str
    fd_setsize: FdSetSize
    sysctls: dict[str, int | None]
    file_nr: FileNr | None
    process: ProcessFds
    verdicts: dict[str, list[Finding]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def findings(self) -> list[Finding]:
        return [f for fs in self.verdicts.values() for f in fs]

    def _unread(self, name: str) -> bool:
        if name == "file_nr":
            return self.file_nr is None
        return name in self.sysctls and self.sysctls[name] is None

    def to_json(self) -> dict[str, Any]:
        p = self.process
        return {
            "schema": SCHEMA,
            "kernel": self.kernel,
            "fd_setsize": {
                "value": self.fd_setsize.value,
                "verified": self.fd_setsize.verified,
                "how": self.fd_setsize.how,
            },
            **self.sysctls,
            "file_nr": None
            if self.file_nr is None
            else {
                "allocated": self.file_nr.allocated,
                "unused": self.file_nr.unused,
                "max": self.file_nr.max,
            },
            "pid": p.pid,
            "pid_is_self": p.is_self,
            "process_name": p.name,
            "process_kind": p.kind,
            "rlimit_nofile": {"soft": p.soft, "hard": p.hard},
            "open_fds": p.open_fds,
            "highest_fd": p.highest_fd,
            "headroom": p.headroom,
            # null: the figure could not be read (the notes say why), so it has no verdict.
            "verdicts": {
                name: None if self._unread(name) else
                (max((f.level for f in fs), key=_LEVEL_ORDER.index) if fs else "ok")
                for name, fs in self.verdicts.items()
            },
            "findings": [f.to_json() for f in self.findings],
            "notes": list(self.notes),
        }


_LEVEL_ORDER = ["info", "warn", "crit"]


def verify_fd_setsize() -> FdSetSize:
    """Find select()'s limit by handing it fds 1023 and 1024 in this process.

    CPython's select() refuses fds >= FD_SETSIZE with ValueError before calling the kernel
    (Modules/selectmodule.c seq2set, _PyIsSelectable_fd); FD_SETSIZE is glibc's, compiled in.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = GLIBC_FD_SETSIZE
    if hard != resource.RLIM_INFINITY and hard <= top:
        return FdSetSize(
            GLIBC_FD_SETSIZE,
            False,
            f"not verified: the hard RLIMIT_NOFILE ({hard}) does not allow opening fd {top}; "
            f"value is glibc's documented FD_SETSIZE (select(2))",
        )
    raised = soft != resource.RLIM_INFINITY and soft <= top
    if raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1, hard))
    opened: list[int] = []
    try:
        base = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        opened.append(base)
        below = fcntl.fcntl(base, fcntl.F_DUPFD_CLOEXEC, top - 1)
        opened.append(below)
        above = fcntl.fcntl(base, fcntl.F_DUPFD_CLOEXEC, top)
        opened.append(above)
        accepted_below = below == top - 1 and _select_accepts(below) is None
        error = _select_accepts(above)
        if error is None:
            return FdSetSize(
                GLIBC_FD_SETSIZE,
                False,
                f"select() accepted fd {above}: this Python's FD_SETSIZE is larger than "
                f"{GLIBC_FD_SETSIZE}; value shown is glibc's default",
            )
        value = above if above == top else GLIBC_FD_SETSIZE
        how = f"select() rejected fd {above} ({error})"
        if accepted_below:
            how = f"select() accepted fd {below} and rejected fd {above} ({error})"
        return FdSetSize(value, above == top and accepted_below, how)
    except OSError as err:
        return FdSetSize(
            GLIBC_FD_SETSIZE, False, f"not verified: could not open fd {top}: {err.strerror}"
        )
    finally:
        for fd in opened:
            os.close(fd)
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _select_accepts(fd: int) -> str | None:
    """None if select() takes fd, else the error text it raised."""
    try:
        select.select([fd], [], [], 0)
    except ValueError as err:
        return f"ValueError: {err}"
    return None


def process_fds(pid: int, proc: Proc) -> ProcessFds:
    is_self = pid == os.getpid()
    stat = parse_stat(proc.read_text(pid, "stat", pid=pid))
    kind = "kernel_thread" if stat.is_kernel_thread else "zombie" if stat.state == "Z" else "process"
    limits = parse_limits(proc.read_text(pid, "limits", pid=pid))
    name = stat.comm
    fds = [int(n) for n in proc.listdir(pid, "fd", pid=pid) if n.isdigit()]
    if is_self:
        # listdir's own directory fd shows up in the listing and is closed by now.
        fds = [fd for fd in fds if _own_fd_open(fd)]
    proc.check_alive(pid)
    nofile = limits.nofile
    return ProcessFds(
        pid=pid,
        name=name,
        is_self=is_self,
        soft=nofile.soft,
        hard=nofile.hard,
        open_fds=len(fds),
        highest_fd=max(fds) if fds else None,
        kind=kind,
    )


def _own_fd_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as err:
        if err.errno == errno.EBADF:
            return False
        raise
    return True


def gather_limits(pid: int | None = None, proc: Proc | None = None) -> LimitsReport:
    """Everything `fdscope limits` shows. A figure that cannot be read (no /proc/sys under
    `subset=pid`, a sysctl this kernel lacks) is None, with a note saying why; a thread id is
    taken as its process, with a note (limits and fds belong to the process)."""
    proc = proc or Proc()
    notes: list[str] = []
    if pid is None:
        pid = os.getpid()
    else:
        try:
            leader = proc.thread_group_leader(pid)
        except ProcGone:  # a copied tree without status files
            leader = pid
        if leader != pid:
            notes.append(f"{pid} is a thread of process {leader}; showing the process "
                         "(threads share its fd table and limits)")
            pid = leader
    process = process_fds(pid, proc)
    system = _sysctl_reader(proc, notes)
    kernel = system("kernel/osrelease")
    kernel = os.uname().release if kernel is None else kernel.strip()  # uname(2): the same
    sysctls: dict[str, int | None] = {}
    for key, name in SYSCTLS.items():
        text = system(name)
        sysctls[key] = None if text is None else parse_int(text, name.replace("/", "."))
    text = system("fs/file-nr")
    file_nr = None if text is None else parse_file_nr(text)
    fd_setsize = verify_fd_setsize()
    report = LimitsReport(kernel, fd_setsize, sysctls, file_nr, process, notes=tuple(notes))
    return LimitsReport(
        kernel, fd_setsize, sysctls, file_nr, process, verdicts(report), tuple(notes)
    )


def _sysctl_reader(proc: Proc, notes: list[str]) -> Callable[[str], str | None]:
    """read(name) -> the text of /proc/sys/NAME, or None with a note. Without /proc/sys at all
    (procfs mounted with subset=pid) one note covers every system figure."""
    if not os.path.isdir(proc.path("sys")):
        mount = proc.mount()
        why = f"{proc.root} is mounted with subset=pid" if mount is not None and \
            mount.subset_pid else f"{proc.path('sys')} does not exist"
        notes.append(f"system-wide figures are not available: {why} (no /proc/sys); "
                     "the kernel release is from uname(2)")

        def absent(name: str) -> str | None:
            return None

        return absent

    def read(name: str) -> str | None:
        try:
            return proc.sysctl(name)
        except ProcGone:
            notes.append(f"{name.replace('/', '.')} is not available on this kernel")
        except AccessDenied as err:
            notes.append(f"{name.replace('/', '.')} is not readable: {err}")
        return None

    return read


def verdicts(r: LimitsReport) -> dict[str, list[Finding]]:
    """Findings keyed by the figure they judge (JSON field names)."""
    p = r.process
    who = f"pid {p.pid} ({p.name})"
    out: dict[str, list[Finding]] = {name: [] for name in FIGURE_ORDER}
    setsize = r.fd_setsize.value
    if p.kind == "zombie":
        out["open_fds"].append(Finding(
            "info", "zombie",
            f"{who} is a zombie: it has exited and holds no fds; its parent has not reaped it",
        ))
        return _system_verdicts(r, out)
    if p.kind == "kernel_thread":
        out["open_fds"].append(Finding(
            "info", "kernel_thread",
            f"{who} is a kernel thread: it has no fd table, its limits are inherited and unused",
        ))
        return _system_verdicts(r, out)

    if p.soft is not None and p.soft > setsize:
        out["rlimit_nofile"].append(Finding(
            "warn", "select_exposure",
            f"soft RLIMIT_NOFILE {p.soft} > FD_SETSIZE {setsize}: select()-based code in "
            f"{who} breaks once it holds fds >= {setsize}; use poll/epoll",
        ))
    if p.soft is not None and p.hard is not None and p.soft < p.hard:
        out["rlimit_nofile"].append(Finding(
            "info", "soft_below_hard",
            f"soft limit {p.soft} can be raised up to the hard limit {p.hard} without privilege "
            "(setrlimit, `ulimit -n`, systemd LimitNOFILE=)",
        ))
    if p.highest_fd is not None and p.highest_fd >= setsize:
        out["highest_fd"].append(Finding(
            "crit", "select_out_of_range",
            f"highest fd {p.highest_fd} >= FD_SETSIZE {setsize}: any select() on it fails "
            "(or corrupts memory in C code without _FORTIFY_SOURCE)",
        ))
    if p.soft is not None and p.open_fds >= p.soft:
        out["open_fds"].append(Finding(
            "crit", "fd_limit_critical",
            f"{p.open_fds} fds open with a soft limit of {p.soft}: at or over the limit (it was "
            "lowered below the open count, e.g. by prlimit), every open()/accept() now fails "
            "with EMFILE (\"Too many open files\")",
        ))
    elif p.soft:
        used = p.open_fds / p.soft
        if used >= 0.95:
            out["open_fds"].append(Finding(
                "crit", "fd_limit_critical",
                f"{p.open_fds} of {p.soft} fds open ({used:.0%}): EMFILE "
                "(\"Too many open files\") is imminent",
            ))
        elif used >= 0.80:
            out["open_fds"].append(Finding(
                "warn", "fd_limit_high",
                f"{p.open_fds} of {p.soft} fds open ({used:.0%}): near EMFILE",
            ))
    return _system_verdicts(r, out)


def _system_verdicts(r: LimitsReport, out: dict[str, list[Finding]]) -> dict[str, list[Finding]]:
    p = r.process
    if r.file_nr is not None and r.file_nr.max > 0:
        used = r.file_nr.allocated / r.file_nr.max
        if used >= 0.80:
            out["file_nr"].append(Finding(
                "warn", "system_file_table_high",
                f"{r.file_nr.allocated} of {r.file_nr.max} system file handles allocated "
                f"({used:.0%}): ENFILE for every process is near",
            ))
    somaxconn = r.sysctls.get("somaxconn")
    if somaxconn is not None and somaxconn < 1024:
        out["somaxconn"].append(Finding(
            "warn", "somaxconn_low",
            f"net.core.somaxconn is {somaxconn}: listen() backlogs above it are silently "
            "truncated (the kernel default is 4096 since Linux 5.4)",
        ))
    nr_open = r.sysctls.get("nr_open")
    if nr_open is not None and p.hard is not None and p.hard >= nr_open:
        out["nr_open"].append(Finding(
            "info", "hard_at_nr_open",
            f"hard limit {p.hard} is at fs.nr_open {nr_open}: raising it needs fs.nr_open first",
        ))
    return out


FIGURE_ORDER = [
    "fd_setsize",
    "rlimit_nofile",
    "open_fds",
    "highest_fd",
    "headroom",
    "file_max",
    "file_nr",
    "nr_open",
    "epoll_max_user_watches",
    "somaxconn",
    "inotify_max_user_watches",
    "inotify_max_user_instances",
]
