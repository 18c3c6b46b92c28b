"""Parse /proc/PID/status (also under task/TID/).

Apart from fdscope.parse.task: inspect reads stat, not status, and would pay for this module's
dataclass on every run (~1 ms to create)."""

from __future__ import annotations

from dataclasses import dataclass

from fdscope.errors import ParseError
from fdscope.parse.task import _int


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
