"""/proc/PID/limits: one row per resource, soft and hard values, "unlimited" as None."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fdscope.errors import ParseError

# fs/proc/base.c proc_pid_limits(): "%-25s %-20s %-20s %-10s" with a header row first.
_ROW = re.compile(r"^(?P<name>\S.*?)\s{2,}(?P<soft>\S+)\s+(?P<hard>\S+)(?:\s+(?P<unit>\S+))?\s*$")


@dataclass(frozen=True)
class Limit:
    """One row of /proc/PID/limits: soft and hard value (None: unlimited) and its unit."""

    soft: int | None
    hard: int | None
    unit: str | None = None


@dataclass(frozen=True)
class ProcLimits:
    """The rows of /proc/PID/limits by name, in the kernel's order."""

    rows: tuple[tuple[str, Limit], ...]

    def get(self, name: str) -> Limit | None:
        for row_name, limit in self.rows:
            if row_name == name:
                return limit
        return None

    @property
    def nofile(self) -> Limit:
        limit = self.get("Max open files")
        if limit is None:
            raise ParseError("/proc/PID/limits", "no 'Max open files' row")
        return limit


def _value(text: str, line: str) -> int | None:
    if text == "unlimited":
        return None
    if not (text.isascii() and text.isdigit()):
        raise ParseError("/proc/PID/limits", f"bad value {text!r} in line {line!r}")
    return int(text)


def parse_limits(text: str) -> ProcLimits:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("Limit"):
        raise ParseError("/proc/PID/limits", "missing header line")
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        m = _ROW.match(line)
        if m is None:
            raise ParseError("/proc/PID/limits", f"unexpected line {line!r}")
        limit = Limit(_value(m["soft"], line), _value(m["hard"], line), m["unit"])
        rows.append((m["name"], limit))
    return ProcLimits(tuple(rows))
