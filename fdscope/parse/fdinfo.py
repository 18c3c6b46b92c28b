"""Parse /proc/PID/fdinfo/FD (fs/proc/fd.c seq_show plus each file type's show_fdinfo)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from fdscope.errors import ParseError


@dataclass(frozen=True)
class EpollTarget:
    """One registration of an epoll set (a `tfd:` line of fs/eventpoll.c ep_show_fdinfo)."""

    tfd: int
    events: int
    data: int
    pos: int | None
    ino: int | None
    sdev: int | None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FdInfo:
    """The fdinfo of one fd: common fields, epoll registrations, and everything else kept as text."""

    pos: int | None
    flags: int | None
    mnt_id: int | None
    ino: int | None
    epoll: tuple[EpollTarget, ...]
    fields: tuple[tuple[str, str], ...]
    unknown: tuple[str, ...]

    def field(self, key: str) -> str | None:
        """The first value of `key` among the kept fields (e.g. "eventfd-count"), or None."""
        for name, value in self.fields:
            if name == key:
                return value
        return None


_DEC = re.compile(r"-?[0-9]+", re.ASCII)
_UDEC = re.compile(r"[0-9]+", re.ASCII)
_OCT = re.compile(r"[0-7]+", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)
# "key:<whitespace>value" or "key:" at end of line; keys never start with whitespace.
_KEY_VALUE = re.compile(r"([^\s:][^:]*):(?:[ \t]+(.*)|[ \t]*)$", re.ASCII | re.DOTALL)
# ep_show_fdinfo: "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"; kernels 3.8-4.x
# print only "tfd: %8d events: %8x data: %16llx". Tokens are parsed by name so widths do not matter.
_TOKEN = re.compile(r"([A-Za-z_][\w-]*):[ \t]*(\S+)", re.ASCII)
# The exact current and 3.8-4.x line shapes, matched whole first (fast path for big interest lists).
_EPOLL_LINE = re.compile(
    r"tfd: *(-?[0-9]+) events: *([0-9a-fA-F]+) data: *([0-9a-fA-F]+)"
    r"(?:  pos:(-?[0-9]+) ino:([0-9a-fA-F]+) sdev:([0-9a-fA-F]+))?",
    re.ASCII,
)
_TOKEN_PARSERS = {"tfd": _DEC, "events": _HEX, "data": _HEX, "pos": _DEC, "ino": _HEX, "sdev": _HEX}

_MINORBITS = 20


def kernel_dev_to_userspace(sdev: int) -> int:
    """Convert the kernel's internal dev_t (epoll `sdev:`) to the st_dev encoding os.stat() uses."""
    # include/linux/kdev_t.h: MAJOR(dev) = dev >> MINORBITS (20), MINOR(dev) = dev & MINORMASK.
    return os.makedev(sdev >> _MINORBITS, sdev & ((1 << _MINORBITS) - 1))


def _int(text: str, pattern: re.Pattern[str], base: int, what: str) -> int:
    if not pattern.fullmatch(text):
        raise ParseError("fdinfo", f"{what}: {text!r} is not a base-{base} number")
    return int(text, base)


def parse_epoll_line(line: str) -> EpollTarget:
    """Parse one `tfd:` line of an epoll fd's fdinfo (any hex width, old and new kernels)."""
    match = _EPOLL_LINE.fullmatch(line)
    if match is not None:
        tfd, events, data, pos, ino, sdev = match.groups()
        if pos is None:
            return EpollTarget(int(tfd), int(events, 16), int(data, 16), None, None, None)
        return EpollTarget(
            int(tfd), int(events, 16), int(data, 16), int(pos), int(ino, 16), int(sdev, 16)
        )
    return _parse_epoll_tokens(line)


def _parse_epoll_tokens(line: str) -> EpollTarget:
    """The general path: `key:value` tokens by name, in any order, extra tokens kept."""
    values: dict[str, int] = {}
    extra: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(line):
        key, raw = match.group(1), match.group(2)
        pattern = _TOKEN_PARSERS.get(key)
        if pattern is None or key in values:
            extra.append((key, raw))
            continue
        base = 10 if pattern is _DEC else 16
        values[key] = _int(raw, pattern, base, f"epoll {key}")
    missing = [k for k in ("tfd", "events", "data") if k not in values]
    if missing:
        raise ParseError("fdinfo", f"epoll line lacks {', '.join(missing)}: {line!r}")
    return EpollTarget(
        tfd=values["tfd"],
        events=values["events"],
        data=values["data"],
        pos=values.get("pos"),
        ino=values.get("ino"),
        sdev=values.get("sdev"),
        extra=tuple(extra),
    )


def parse_fdinfo(text: str) -> FdInfo:
    """Parse the text of /proc/PID/fdinfo/FD.

    pos (decimal), flags (octal, "0%o"), mnt_id and ino (decimal) are decoded; a malformed value for
    one of them raises ParseError, as does a missing flags line (printed by every kernel since
    2.6.22). `tfd:` lines become `epoll`. Any other "key: value" line is kept in `fields` and any
    other line (inotify/fanotify marks, io_uring lists, lines of newer kernels) in `unknown`."""
    pos = flags = mnt_id = ino = None
    epoll: list[EpollTarget] = []
    fields: list[tuple[str, str]] = []
    unknown: list[str] = []
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("tfd:"):
            epoll.append(parse_epoll_line(line))
            continue
        match = _KEY_VALUE.fullmatch(line)
        if match is None:
            unknown.append(line)
            continue
        key, value = match.group(1), (match.group(2) or "").strip()
        if key == "tfd":
            epoll.append(parse_epoll_line(line))
        elif key == "pos" and pos is None:
            pos = _int(value, _DEC, 10, "pos")
        elif key == "flags" and flags is None:
            flags = _int(value, _OCT, 8, "flags")
        elif key == "mnt_id" and mnt_id is None:
            mnt_id = _int(value, _UDEC, 10, "mnt_id")
        elif key == "ino" and ino is None:
            ino = _int(value, _UDEC, 10, "ino")
        else:
            fields.append((key, value))
    if flags is None:
        raise ParseError("fdinfo", "no flags line")
    return FdInfo(
        pos=pos,
        flags=flags,
        mnt_id=mnt_id,
        ino=ino,
        epoll=tuple(epoll),
        fields=tuple(fields),
        unknown=tuple(unknown),
    )


# The current kernel's epoll line (fs/eventpoll.c ep_show_fdinfo, Linux 3.19+), whole:
# "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x".
_EPOLL_ROW = re.compile(r"^tfd:\s*(\d+) events:\s*([0-9a-f]+) data:\s*([0-9a-f]+)\s+pos:(-?\d+) "
                        r"ino:([0-9a-f]+) sdev:([0-9a-f]+)$", re.MULTILINE | re.ASCII)
# fs/proc/fd.c seq_show: every fdinfo starts "pos:\t%lli\nflags:\t0%o\n".
_HEAD = re.compile(r"\Apos:\t(\d+)\nflags:\t([0-7]+)\n", re.ASCII)


def epoll_rows(text: str) -> list[tuple[int, int, int, int, int]] | None:
    """The registrations of an epoll fd's fdinfo in the current kernel form, as
    [(tfd, mask, data, ino, sdev in os.stat's st_dev encoding)] sorted by tfd, stably (the
    kernel lists them by file pointer, and a closed and a new registration may share a tfd);
    None for any other form (older kernels, damage): parse_fdinfo then decides. The C
    accelerator's epoll_rows is its twin."""
    rows = _EPOLL_ROW.findall(text)
    if len(rows) != text.count("tfd:") or _HEAD.match(text) is None:
        return None
    devs: dict[str, int] = {}
    out = []
    for tfd, mask, data, _pos, ino, sdev in rows:
        dev = devs.get(sdev)
        if dev is None:
            dev = devs[sdev] = kernel_dev_to_userspace(int(sdev, 16))
        out.append((int(tfd), int(mask, 16), int(data, 16), int(ino, 16), dev))
    out.sort(key=lambda row: row[0])
    return out


def fdinfo_head(text: str) -> tuple[int, int] | None:
    """(flags, pos) from the two lines every fdinfo starts with, or None when the text does not
    start so (parse_fdinfo then reads it whole)."""
    m = _HEAD.match(text)
    return None if m is None else (int(m.group(2), 8), int(m.group(1)))
