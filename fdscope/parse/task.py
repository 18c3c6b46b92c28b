"""Parse /proc/PID/stat and /proc/PID/cmdline (also under task/TID/); /proc/PID/status is
fdscope.parse.status."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fdscope.errors import ParseError

# include/linux/sched.h: set on kernel threads.
PF_KTHREAD = 0x00200000

# fs/proc/array.c task_state_array, by the letter /proc/PID/stat shows.
TASK_STATES: dict[str, str] = {
    "R": "running",
    "S": "sleeping",
    "D": "disk sleep",
    "T": "stopped",
    "t": "tracing stop",
    "X": "dead",
    "Z": "zombie",
    "P": "parked",
    "I": "idle",
}


@dataclass(frozen=True)
class TaskStat:
    """The fields of /proc/PID/stat fdscope uses (see proc_pid_stat(5)); times are in clock ticks."""

    pid: int
    comm: str
    state: str
    ppid: int
    flags: int
    utime: int
    stime: int
    num_threads: int
    starttime: int
    is_kernel_thread: bool
    processor: int | None = None
    rss_pages: int | None = None


_INT = re.compile(r"-?[0-9]+", re.ASCII)


def _int(text: str, what: str, name: str) -> int:
    if not _INT.fullmatch(text):
        raise ParseError(what, f"{name} {text!r} is not a number")
    return int(text)


def parse_stat(text: str) -> TaskStat:
    """Parse /proc/PID/stat or /proc/PID/task/TID/stat.

    comm may hold spaces and ')' (it is whatever the program set, up to 15 bytes), so the line is
    split at the last ')' (fs/proc/array.c do_task_stat prints "%d (%s) %c ...")."""
    what = "/proc/PID/stat"
    text = text.strip()
    open_paren = text.find(" (")
    close_paren = text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ParseError(what, f"no '(comm)' in {text[:80]!r}")
    pid = _int(text[:open_paren], what, "pid")
    comm = text[open_paren + 2 : close_paren]
    rest = text[close_paren + 1 :].split()
    if len(rest) < 20:
        raise ParseError(what, f"expected at least 22 fields, got {len(rest) + 2}")
    state = rest[0]
    if len(state) != 1:
        raise ParseError(what, f"state {state!r} is not one letter")
    # proc_pid_stat(5) numbers fields from 1: (3) state ... (9) flags, (14) utime, (15) stime,
    # (20) num_threads, (22) starttime, (24) rss, (39) processor; rest[0] is field 3.
    flags = _int(rest[6], what, "flags")
    return TaskStat(
        pid=pid,
        comm=comm,
        state=state,
        ppid=_int(rest[1], what, "ppid"),
        flags=flags,
        utime=_int(rest[11], what, "utime"),
        stime=_int(rest[12], what, "stime"),
        num_threads=_int(rest[17], what, "num_threads"),
        starttime=_int(rest[19], what, "starttime"),
        is_kernel_thread=bool(flags & PF_KTHREAD),
        processor=_int(rest[36], what, "processor") if len(rest) > 36 else None,
        rss_pages=_int(rest[21], what, "rss") if len(rest) > 21 else None,
    )


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """Split /proc/PID/cmdline (NUL-separated, usually NUL-terminated) into arguments.

    A kernel thread, a zombie, or a process caught mid-exec has an empty cmdline: (). Trailing NULs
    are dropped, since programs that rewrite their title (setproctitle: nginx, postgres) pad argv
    with NULs; a genuinely empty last argument is lost with them. Bytes that are not UTF-8 are
    kept with surrogateescape, as os.fsdecode does."""
    data = data.rstrip(b"\0")
    if not data:
        return ()
    return tuple(arg.decode("utf-8", "surrogateescape") for arg in data.split(b"\0"))
