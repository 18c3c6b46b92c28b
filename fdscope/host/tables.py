"""One process's fd table as the host scan reads it: the link of every fd, sorted by
link_kinds (fdscope.parse.fdkinds, in C with the accelerator), one stat() per path and the
fdinfo of its epoll fds. Light on imports: the host read-ahead (fdscope.host.readahead) reads
with it while click loads."""

from __future__ import annotations

import os
from itertools import compress
from typing import NamedTuple

from fdscope import speedups
from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ProcGone
from fdscope.inspect import gather
from fdscope.parse.fdkinds import KIND_ANON, KIND_PATH
from fdscope.proc import Proc

# Fd tables are read on this many threads when there are many (the scan, the read-ahead).
READERS = min(4, os.cpu_count() or 1)


class RawTable(NamedTuple):
    """One process's fd table as read: fds ascending, their link texts, link_kinds() of them,
    (st_mode, st_ino, st_dev) by path link text, the fdinfo text of each epoll fd."""

    fds: list[int]
    links: list[str]
    kinds: bytes
    inodes: list[int]
    path_stats: dict[str, tuple[int, int, int]]
    epoll: dict[int, str]


def read_table(proc: Proc, pid: int) -> RawTable | FdscopeError:
    """pid's fd table, or the error that stopped the read (exited: NoSuchProcess/ProcGone;
    denied: AccessDenied)."""
    try:
        # inspect's reader: a dense table (the usual case) is read without listing it
        fd_list, link_list, _gone = gather.fd_links(proc, pid)
        kinds, inodes = speedups.backend.link_kinds(link_list)
        # One stat() per path: fds with the same link text are one file (or files of the same
        # type at the same path, a mount over them aside), and the type is all the scan
        # needs; inspect stats every fd.
        first: dict[str, str] = {}
        for row in compress(range(len(kinds)), where(kinds, KIND_PATH)):
            first.setdefault(link_list[row], str(fd_list[row]))
        stats = proc.stats(pid, "fd", names=list(first.values()), pid=pid)[0] if first else {}
        epfds = [str(fd_list[row]) for row in compress(range(len(kinds)), where(kinds, KIND_ANON))
                 if link_list[row] == gather.EPOLL_LINK]
        texts = proc.read_many(pid, "fdinfo", names=epfds, pid=pid)[0] if epfds else {}
    except (NoSuchProcess, ProcGone, AccessDenied) as err:
        return err
    return RawTable(fd_list, link_list, kinds, inodes,
                    {link: stats[name] for link, name in first.items() if name in stats},
                    {int(k): v for k, v in texts.items()})


def where(kinds: bytes, *which: int) -> bytes:
    """A compress() selector over link_kinds' bytes: 1 where the kind is one of `which`."""
    table = bytearray(256)
    for k in which:
        table[k] = 1
    return kinds.translate(table)


def inodes_by_fd(raw: RawTable) -> dict[int, int]:
    """fd -> the inode it is open on as the table was read (sockets, pipes, paths), 0 where the
    link names none (anon inodes)."""
    out = dict(zip(raw.fds, raw.inodes, strict=True))
    for row in compress(range(len(raw.kinds)), where(raw.kinds, KIND_PATH)):
        st = raw.path_stats.get(raw.links[row])
        if st is not None:
            out[raw.fds[row]] = st[1]
    return out
