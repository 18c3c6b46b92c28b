"""Epoll interest lists from gathered text, and the status of each registration: is the file it
watches still open under the fd number it was registered with?

fs/eventpoll.c keys a registration by (file, fd number) and removes it only when the file is
closed for good (the last fd or reference goes): close() of one fd of a dup'ed file leaves it in
place (epoll(7), Q6). So a registration's tfd may now be closed, or name another file.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

from fdscope import speedups
from fdscope.errors import ParseError
from fdscope.inspect.model import EpollSet, Registration
from fdscope.parse.events import decode_epoll_mask
from fdscope.parse.fdinfo import kernel_dev_to_userspace, parse_fdinfo

if TYPE_CHECKING:
    from fdscope.inspect.fds import Table

# One registration as read: (tfd, mask, data, ino, sdev in os.stat's st_dev encoding).
Reg = tuple[int, int, int, "int | None", "int | None"]


class Identity(Protocol):
    """(st_ino, st_dev) of the file an fd is open as (fdscope.inspect.gather.Identity)."""

    keys: dict[int, tuple[int, int] | None]

    def key(self, fd: int) -> tuple[int, int] | None: ...


def parse_sets(texts: dict[int, str | None]) -> tuple[dict[int, list[Reg]], list[str]]:
    """epfd -> its registrations sorted by tfd, stably (the kernel lists them by file pointer,
    and a closed and a new registration may share a tfd); and errors (the report is partial).
    An epoll fd closed meanwhile (text None) is left out."""
    sets: dict[int, list[Reg]] = {}
    errors: list[str] = []
    for epfd, text in texts.items():
        if text is None:
            continue
        rows = speedups.backend.epoll_rows(text)
        if rows is not None:
            sets[epfd] = rows  # type: ignore[assignment]
            continue
        try:
            info = parse_fdinfo(text)
        except ParseError as err:
            errors.append(f"epoll fd {epfd}: interest list unreadable: {err}")
            continue
        sets[epfd] = sorted(((t.tfd, t.events, t.data, t.ino,
                              kernel_dev_to_userspace(t.sdev) if t.sdev is not None else None)
                             for t in info.epoll), key=lambda reg: reg[0])
        if info.epoll and info.epoll[0].ino is None:
            errors.append(f"epoll fd {epfd}: this kernel prints no target inode/device, so "
                          "closed and reused registrations cannot be told from ok ones")
        if info.unknown:
            errors.append(f"epoll fd {epfd}: {len(info.unknown)} unrecognised fdinfo line(s) "
                          f"kept as text, e.g. {info.unknown[0][:60]!r}")
    return sets, errors


def build(sets: dict[int, list[Reg]], table: Table, identity: Identity) -> list[EpollSet]:
    """Each set's registrations with their status: ok (tfd is that file), closed (tfd not open)
    or reused (tfd names another file), and open_as: the fds of this process holding the
    watched file."""
    if not sets:
        return []
    join = _Join(table, identity, next(iter(sets)))
    names: dict[int, tuple[str, ...]] = {}
    out = []
    for epfd, regs in sets.items():
        rows = []
        for tfd, mask, data, ino, sdev in regs:
            events = names.get(mask)
            if events is None:
                events = names[mask] = decode_epoll_mask(mask)
            rows.append(join.registration(tfd, mask, events, data, ino, sdev))
        out.append(EpollSet(epfd, tuple(rows)))
    return out


class _Join:
    """Identity of files across the fd table and the interest lists: a file is (st_ino,
    st_dev); sockets and pipes name their inode in the link, and one stat() per filesystem
    (sockfs, pipefs) gives the device."""

    def __init__(self, table: Table, identity: Identity, an_epfd: int) -> None:
        self.table = table
        self.identity = identity
        # Every anon_inode file shares one inode (fs/anon_inodes.c): an epoll fd has it.
        self.anon_key = identity.key(an_epfd)
        self.ino_count = Counter(table.inodes)
        self.type_dev: dict[str, int | None] = {}
        for typ in ("socket", "pipe"):
            if typ in table.types:
                key = self.fd_key(table.fds[table.types.index(typ)])
                self.type_dev[typ] = key[1] if key is not None else None
        self.by_ino: dict[int, list[int]] | None = None
        self.anon_scanned = False

    def fd_key(self, fd: int) -> tuple[int, int] | None:
        if fd in self.identity.keys:
            return self.identity.keys[fd]
        row = self.table.row(fd)
        if row is None:
            return self.identity.key(fd)
        typ, ino = self.table.types[row], self.table.inodes[row]
        dev = self.type_dev.get(typ)
        if ino is None or typ not in ("socket", "pipe") or dev is None:
            return self.identity.key(fd)
        return (ino, dev)

    def registration(self, tfd: int, mask: int, events: tuple[str, ...], data: int,
                     ino: int | None, sdev: int | None) -> Registration:
        t = self.table
        row = t.row(tfd)
        # The common case: tfd's link names the watched inode on sockfs/pipefs, and no other
        # fd holds that inode.
        if (row is not None and t.inodes[row] == ino and self.ino_count[ino] == 1
                and self.type_dev.get(t.types[row], -1) == sdev):
            return Registration(tfd, mask, events, data, ino, sdev, "ok", (tfd,), True)
        open_now = row is not None
        if ino is None or sdev is None:
            # Kernels before 3.19 print no ino/sdev (fs/eventpoll.c): identity unknowable.
            return Registration(tfd, mask, events, data, ino, sdev,
                                "ok" if open_now else "closed", (tfd,) if open_now else (),
                                False)
        key = (ino, sdev)
        status = ("ok" if self.fd_key(tfd) == key else "reused") if open_now else "closed"
        if key == self.anon_key:
            # Every anon_inode file shares one inode: holders cannot be told apart.
            return Registration(tfd, mask, events, data, ino, sdev, status,
                                (tfd,) if status == "ok" else (), False)
        holders = self._holders(key)
        if not holders and not self.anon_scanned:
            # A file whose link names no inode (pidfs, memfd, ...): stat those fds, once.
            self.anon_scanned = True
            by_ino = self._by_ino()
            for fd, fino in zip(t.fds, t.inodes, strict=True):
                if fino is None:
                    k = self.identity.key(fd)
                    if k is not None:
                        by_ino.setdefault(k[0], []).append(fd)
            holders = self._holders(key)
        return Registration(tfd, mask, events, data, ino, sdev, status,
                            tuple(sorted(set(holders))), True)

    def _holders(self, key: tuple[int, int]) -> list[int]:
        return [fd for fd in self._by_ino().get(key[0], ()) if self.fd_key(fd) == key]

    def _by_ino(self) -> dict[int, list[int]]:
        if self.by_ino is None:
            self.by_ino = {}
            for fd, ino in zip(self.table.fds, self.table.inodes, strict=True):
                if ino is not None:
                    self.by_ino.setdefault(ino, []).append(fd)
        return self.by_ino
