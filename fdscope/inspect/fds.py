"""The fd table from gathered text: each fd's type and inode from its link, flags and offset from
its fdinfo, and the rows of the report."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import NamedTuple

from fdscope.errors import ParseError
from fdscope.inspect.model import FdEntry, SocketInfo, Summary
from fdscope.parse.events import decode_open_flags
from fdscope.parse.fdinfo import fdinfo_head, parse_fdinfo
from fdscope.parse.fdlink import ANON_LINKS, classify_fd

_new_entry = partial(tuple.__new__, FdEntry)
# Types of fds opened by path (stat() of the link tells them apart).
PATH_TYPES = frozenset({"file", "dir", "chr", "blk"})


class Table(NamedTuple):
    """The fd table as columns, one row per open fd, ascending."""

    fds: list[int]
    links: list[str]
    types: list[str]
    inodes: list[int | None]

    def row(self, fd: int) -> int | None:
        """The row of fd, None when it is not open (tables are mostly dense: row = fd)."""
        fds = self.fds
        if 0 <= fd < len(fds) and fds[fd] == fd:
            return fd
        lo, hi = 0, len(fds)
        while lo < hi:
            mid = (lo + hi) // 2
            if fds[mid] < fd:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(fds) and fds[lo] == fd else None


def without(table: Table, gone: set[int]) -> Table:
    """The table without the fds in `gone` (closed while the scan read them)."""
    if not gone:
        return table
    keep = [i for i, fd in enumerate(table.fds) if fd not in gone]
    return Table(*([column[i] for i in keep] for column in table))


def classify(fds: list[int], links: list[str],
             stats: dict[int, tuple[int, int, int]]) -> Table:
    """Type and inode of each fd from its link text. Sockets and pipes name their inode in the
    link (net/socket.c sockfs_dname "socket:[%lu]", fs/pipe.c pipefs_dname "pipe:[%lu]"); path
    fds take their type from st_mode and inode from stat() (`stats`: fd -> (st_mode, st_ino,
    st_dev), absent when the stat failed); every other text is classified once."""
    types: list[str] = []
    inodes: list[int | None] = []
    seen: dict[str, tuple[str, int | None]] = {}
    for fd, link in zip(fds, links, strict=True):
        if link[:8] == "socket:[" and link[-1:] == "]" and link[8:-1].isdecimal() \
                and link.isascii():
            types.append("socket")
            inodes.append(int(link[8:-1]))
        elif link[:6] == "pipe:[" and link[-1:] == "]" and link[6:-1].isdecimal() \
                and link.isascii():
            types.append("pipe")
            inodes.append(int(link[6:-1]))
        elif link[:1] == "/":
            st = stats.get(fd)
            if st is None:
                t = classify_fd(link)
                types.append(t.type)
                inodes.append(t.inode)
            else:
                types.append(classify_fd(link, st[0]).type)
                inodes.append(st[1])
        else:
            hit = seen.get(link)
            if hit is None:
                typ = ANON_LINKS.get(link)
                if typ is not None:
                    hit = (typ, None)
                else:
                    t = classify_fd(link)
                    hit = (t.type, t.inode)
                seen[link] = hit
            types.append(hit[0])
            inodes.append(hit[1])
    return Table(fds, links, types, inodes)


def flags(want: list[int], texts: dict[int, str], arch: str
          ) -> tuple[dict[int, tuple[tuple[str, ...] | None, int | None, int | None]], list[str]]:
    """fd -> (open flag names, pos, raw flags) from the fdinfo of each fd in `want` that has a
    text (one closed meanwhile has none), and notes on texts that would not parse."""
    out: dict[int, tuple[tuple[str, ...] | None, int | None, int | None]] = {}
    notes: list[str] = []
    names_of: dict[int, tuple[str, ...]] = {}
    for fd in want:
        text = texts.get(fd)
        if text is None:
            continue
        head = fdinfo_head(text)
        if head is None:
            try:
                info = parse_fdinfo(text)
            except ParseError as err:
                notes.append(f"fd {fd}: {err}")
                continue
            head = (info.flags, info.pos)
        raw, pos = head
        if raw is None:
            out[fd] = (None, pos, None)
            continue
        names = names_of.get(raw)
        if names is None:
            names = names_of[raw] = decode_open_flags(raw, arch)
        out[fd] = (names, pos, raw)
    return out, notes


def entries(table: Table, sockets: dict[int, SocketInfo],
            fd_flags: dict[int, tuple[tuple[str, ...] | None, int | None, int | None]]
            ) -> list[FdEntry]:
    """The report's rows: a socket fd missing from the net tables gets proto "unknown"."""
    unknown = SocketInfo("unknown", "UNKNOWN", None, None, None, None)
    n = len(table.fds)
    socks: list[SocketInfo | None] = [None] * n
    for row in [i for i, typ in enumerate(table.types) if typ == "socket"]:
        socks[row] = sockets.get(table.inodes[row], unknown)  # type: ignore[arg-type]
    names: list[tuple[str, ...] | None] = [None] * n
    pos: list[int | None] = [None] * n
    raw: list[int | None] = [None] * n
    for fd, (flag_names, offset, flags_raw) in fd_flags.items():
        row = table.row(fd)
        if row is not None:
            names[row], pos[row], raw[row] = flag_names, offset, flags_raw
    return list(map(_new_entry, zip(table.fds, table.types, table.links, table.inodes, names,
                                    pos, socks, raw, strict=True)))


def summarize(rows: list[FdEntry], summary: Summary) -> None:
    """Fill the fd counts of `summary` from the rows."""
    summary.open_fds = len(rows)
    summary.highest_fd = rows[-1].fd if rows else None
    summary.by_type = _by_count(Counter(e.type for e in rows))
    summary.socket_states = _by_count(Counter(e.socket.state for e in rows
                                              if e.socket is not None))


def _by_count(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
