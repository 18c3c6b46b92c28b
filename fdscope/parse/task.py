"""Parse /proc/PID/stat, /proc/PID/status and /proc/PID/cmdline (also under task/TID/)."""

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


@dataclass(frozen=True)
class ProcStatus:
    """The fields of /proc/PID/status fdscope uses; every line is also kept in `fields`.

    `name` is unescaped (fs/proc/array.c proc_task_name escapes "\\n" and "\\\\");
    `kthread` comes from the "Kthread:" line (Linux 6.x), None on kernels without it."""

    name: str
    state: str
    tgid: int
    pid: int
    ppid: int
    uid: int
    threads: int
    euid: int | None = None
    fdsize: int | None = None
    vm_rss_kb: int | None = None
    voluntary_ctxt_switches: int | None = None
    nonvoluntary_ctxt_switches: int | None = None
    kthread: bool | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, key: str) -> str | None:
        """The raw value of `key` (e.g. "SigBlk"), or None."""
        for name, value in self.fields:
            if name == key:
                return value
        return None


def _unescape_name(raw: str) -> str:
    # string_escape_str(..., ESCAPE_SPACE | ESCAPE_SPECIAL, "\n\\"): \n, \t, \\ and friends.
    table = {
        "n": "\n",
        "t": "\t",
        "\\": "\\",
        "r": "\r",
        "f": "\f",
        "v": "\v",
        "a": "\a",
        "e": "\x1b",
        '"': '"',
    }
    out = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw) and raw[i + 1] in table:
            out.append(table[raw[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def parse_status(text: str) -> ProcStatus:
    """Parse /proc/PID/status ("Key:\\tvalue" lines)."""
    what = "/proc/PID/status"
    fields: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if not sep or not key or key[0].isspace():
            continue
        # Name keeps its spaces; only the one tab after "Name:" is the separator.
        value = value.strip() if key != "Name" else value.removeprefix("\t")
        fields.append((key, value))
        values.setdefault(key, value)
    for key in ("Name", "State", "Tgid", "Pid", "PPid", "Uid", "Threads"):
        if key not in values:
            raise ParseError(what, f"no {key} line")
    uids = values["Uid"].split()
    if not uids:
        raise ParseError(what, "empty Uid line")

    def first_int(key: str) -> int | None:
        if key not in values:
            return None
        words = values[key].split()
        return _int(words[0], what, key) if words else None

    kthread = first_int("Kthread")
    return ProcStatus(
        name=_unescape_name(values["Name"]),
        state=values["State"][:1],
        tgid=_int(values["Tgid"], what, "Tgid"),
        pid=_int(values["Pid"], what, "Pid"),
        ppid=_int(values["PPid"], what, "PPid"),
        uid=_int(uids[0], what, "Uid"),
        threads=_int(values["Threads"], what, "Threads"),
        euid=_int(uids[1], what, "Uid") if len(uids) > 1 else None,
        fdsize=first_int("FDSize"),
        vm_rss_kb=first_int("VmRSS"),
        voluntary_ctxt_switches=first_int("voluntary_ctxt_switches"),
        nonvoluntary_ctxt_switches=first_int("nonvoluntary_ctxt_switches"),
        kthread=None if kthread is None else bool(kthread),
        fields=tuple(fields),
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
