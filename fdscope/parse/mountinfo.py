"""Parse /proc/PID/mountinfo, for the options procfs is mounted with (hidepid, gid, subset).

A line (proc(5), fs/proc_namespace.c show_mountinfo):
    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
mount id, parent id, major:minor, root, mount point, per-mount options, optional fields ended by
"-", then filesystem type, source and per-superblock options. Paths escape space, tab, newline
and backslash as octal (\\040, \\011, \\012, \\134).

procfs shows its options among the superblock ones (fs/proc/root.c proc_show_options):
`hidepid=` as a name since Linux 5.8 (off, noaccess, invisible, ptraceable), as a number
before (0, 1, 2); `gid=N`; `subset=pid`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# hidepid=N as older kernels print it -> the name Linux 5.8+ prints (Documentation/filesystems/proc.rst).
HIDEPID_NAMES = {"0": "off", "1": "noaccess", "2": "invisible", "4": "ptraceable"}

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One mountinfo line: where, what, and the superblock options as name -> value
    (value "" for a bare flag such as "rw")."""

    mount_point: str
    fstype: str
    source: str
    options: tuple[tuple[str, str], ...]

    def option(self, name: str) -> str | None:
        for key, value in self.options:
            if key == name:
                return value
        return None

    @property
    def hidepid(self) -> str | None:
        """off, noaccess, invisible, ptraceable (or the raw value of an unknown one); None
        when not given (off)."""
        value = self.option("hidepid")
        return None if value is None else HIDEPID_NAMES.get(value, value)

    @property
    def subset_pid(self) -> bool:
        return self.option("subset") == "pid"


def _unescape(path: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every well-formed line, in order (later mounts on the same point are on top); lines
    that do not have the shape above are skipped."""
    mounts = []
    for line in text.split("\n"):
        words = line.split(" ")
        try:
            dash = words.index("-", 6)
        except ValueError:
            continue
        if len(words) < dash + 4:
            continue
        options: list[tuple[str, str]] = []
        for item in words[dash + 3].split(","):
            key, _, value = item.partition("=")
            if key:
                options.append((key, value))
        mounts.append(Mount(_unescape(words[4]), words[dash + 1], _unescape(words[dash + 2]),
                            tuple(options)))
    return mounts


def mount_at(mounts: list[Mount], mount_point: str, fstype: str | None = None) -> Mount | None:
    """The topmost mount at `mount_point` (of type `fstype`, if given), or None."""
    for m in reversed(mounts):
        if m.mount_point == mount_point:
            return m if fstype is None or m.fstype == fstype else None
    return None
