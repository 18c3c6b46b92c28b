"""Epoll interest lists from gathered text, and the status of each registration: is the file it
watches still open under the fd number it was registered with?

fs/eventpoll.c keys a registration by (file, fd number) and removes it only when the file is
closed for good (the last fd or reference goes): close() of one fd of a dup'ed file leaves it in
place (epoll(7), Q6). So a registration's tfd may now be closed, or name another file.
"""

from __future__ import annotations

import errno
from collections import Counter
from functools import cmp_to_key, partial
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

from fdscope import speedups
from fdscope.errors import ParseError
from fdscope.inspect.model import EpollSet, Registration
from fdscope.parse.events import decode_epoll_mask
from fdscope.parse.fdinfo import FdInfo, kernel_dev_to_userspace, parse_epoll_line, parse_fdinfo

if TYPE_CHECKING:
    from fdscope.inspect.fds import Table

# One registration as read: (tfd, mask, data, ino, sdev in os.stat's st_dev encoding).
Reg = tuple[int, int, int, "int | None", "int | None"]


class Identity(Protocol):
    """What only the kernel can answer about one process's files (fdscope.inspect.gather
    .Identity): kcmp(2), and (st_ino, st_dev) where kcmp cannot be used."""

    keys: dict[int, tuple[int, int] | None]
    reason: str | None  # why kcmp cannot be used, once known

    def kcmp(self, items: list[tuple[int, ...]]) -> list[int] | None: ...

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
        except ParseError:
            # One malformed registration line costs that registration, not the set.
            targets, bad = [], []
            for line in text.split("\n"):
                if line.startswith("tfd:"):
                    try:
                        targets.append(parse_epoll_line(line))
                    except ParseError as err:
                        bad.append(str(err))
            errors.append(f"epoll fd {epfd}: {len(bad)} registration line(s) unreadable, "
                          f"left out: {bad[0] if bad else 'no flags line'}")
            info = FdInfo(None, None, None, None, tuple(targets), (), ())
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


def _toffs(regs: list[Reg]) -> list[int]:
    """Each registration's rank among those with the same tfd: regs are sorted by tfd, in the
    kernel's order among equal tfds, which is how KCMP_EPOLL_TFD counts them."""
    out = []
    last, toff = None, 0
    for reg in regs:
        toff = toff + 1 if reg[0] == last else 0
        last = reg[0]
        out.append(toff)
    return out


def build(sets: dict[int, list[Reg]], table: Table, identity: Identity
          ) -> tuple[list[EpollSet], int]:
    """Each set's registrations with their status: ok (tfd is that file), closed (tfd not open)
    or reused (tfd names another file), and open_as: the fds of this process holding the
    watched file. Also how many registrations went away since their interest list was read.

    The kernel answers exactly: kcmp(2) KCMP_EPOLL_TFD compares the file registered in an
    epoll fd as (tfd, toff) with the file an fd names now (kernel/kcmp.c kcmp_epoll_target; CRIU
    verifies its epoll targets so). Where kcmp is refused or missing, identity falls back to
    (inode, device): exact for sockets (one inode per socket file), not for the rest (anon-inode
    files share one inode, a pipe's two ends one, two open()s of a path one), which are then
    verified=False."""
    if not sets:
        return [], 0
    exact = _Exact(table, identity, next(iter(sets)))
    out: list[EpollSet] = []
    gone = 0
    for epfd, regs in sets.items():
        rows = exact.registrations(epfd, regs) if identity.reason is None else None
        if rows is None:
            break
        gone += len(regs) - len(rows)
        out.append(EpollSet(epfd, tuple(rows)))
    else:
        if exact.unverified:
            identity.reason = (f"{exact.unverified} registration(s) beyond kcmp(2)'s budget: it "
                               "walks the interest list for each query")
        return out, gone
    join = _Join(table, identity, next(iter(sets)))  # kcmp refused: by inode
    sockfs = join.type_dev.get("socket")
    names: dict[int, tuple[str, ...]] = {}
    out = []
    for epfd, regs in sets.items():
        rows = []
        for tfd, mask, data, ino, sdev in regs:
            events = names.get(mask)
            if events is None:
                events = names[mask] = decode_epoll_mask(mask)
            r = join.registration(tfd, mask, events, data, ino, sdev)
            rows.append(r._replace(verified=r.verified and sdev is not None and sdev == sockfs))
        out.append(EpollSet(epfd, tuple(rows)))
    return out, 0


_new_reg = partial(tuple.__new__, Registration)
_STATUS = {0: "ok", 1: "reused", 2: "reused", 3: "reused"}


# kcmp(2) KCMP_EPOLL_TFD finds the registration by walking the interest list from its start
# (fs/eventpoll.c ep_find_tfd), so each query costs up to the list's length: queries are
# spent only where an inode cannot answer, within this many list entries walked per report.
KCMP_STEPS = 2_000_000


class _Exact:
    """Registrations verified by the kernel: a socket by its inode (a socket has exactly one
    open file, net/socket.c sock_alloc_file, and none can be opened by path), everything else
    (pipes, whose two ends share an inode; anon-inode files, which all share one; paths opened
    twice; numbers that do not match) by kcmp(2)."""

    def __init__(self, table: Table, identity: Identity, an_epfd: int) -> None:
        self.table = table
        self.identity = identity
        self.an_epfd = an_epfd
        self.names: dict[int, tuple[str, ...]] = {}
        self.steps = KCMP_STEPS
        self.unverified = 0
        self.join: _Join | None = None
        first_socket = next((fd for fd, typ in zip(table.fds, table.types, strict=True)
                             if typ == "socket"), None)
        key = identity.key(first_socket) if first_socket is not None else None
        self.sock_dev = key[1] if key is not None else None
        self.types = [*table.types, None]  # row len(fds): not open
        self.inodes = [*table.inodes, None]
        # Fds whose file another open fd may share: same socket or pipe inode (a dup, or a
        # pipe's other end), same anon_inode class (every eventfd shares one inode), same path
        # inode. Only those need asking which fds hold the same file.
        self.keys = [(typ, ino) if ino is not None else link for typ, ino, link in
                     zip(table.types, table.inodes, table.links, strict=True)]
        self.sharing = Counter(self.keys)
        self.dups: dict[int, tuple[int, ...]] = {}

    def registrations(self, epfd: int, regs: list[Reg]) -> list[Registration] | None:
        """The registrations of one set (those gone meanwhile left out), or None when kcmp
        cannot be used."""
        t = self.table
        n = len(t.fds)
        tfds = list(map(itemgetter(0), regs))
        if n and t.fds[-1] == n - 1:  # dense: the row of fd is fd
            rows = [fd if 0 <= fd < n else n for fd in tfds]
        else:
            rows = [n if row is None else row for row in map(t.row, tfds)]
        # A socket fd whose link names the registered inode on sockfs is that file.
        sock_dev = self.sock_dev
        status = ["ok" if typ == "socket" and fino == ino and sdev == sock_dev else None
                  for typ, fino, ino, sdev in zip(
                      map(self.types.__getitem__, rows), map(self.inodes.__getitem__, rows),
                      map(itemgetter(3), regs), map(itemgetter(4), regs), strict=False)]
        verified = [True] * len(regs)
        ask = [i for i, st in enumerate(status) if st is None]
        self.regs, self.toffs = regs, _toffs(regs) if ask else []
        if ask and not self._kcmp_status(epfd, regs, ask, status, verified):
            return None
        keys, sharing = self.keys + [None], self.sharing
        open_as = [(reg[0],) if st == "ok" and sharing[keys[row]] < 2 else
                   self._open_as(st, reg, epfd, i, ok, keys[row])
                   for i, (st, reg, ok, row) in enumerate(zip(status, regs, verified, rows,
                                                              strict=True))]
        names = self.names
        for mask in {reg[1] for reg in regs} - names.keys():
            names[mask] = decode_epoll_mask(mask)
        made = map(_new_reg, zip(
            tfds, map(itemgetter(1), regs),
            map(names.__getitem__, map(itemgetter(1), regs)), map(itemgetter(2), regs),
            map(itemgetter(3), regs), map(itemgetter(4), regs), status, open_as, verified, strict=False))
        # A registration removed since the list was read (ENOENT), or its epoll fd closed.
        return list(compress(made, status))

    def _kcmp_status(self, epfd: int, regs: list[Reg], ask: list[int], status: list[Any],
                     verified: list[bool]) -> bool:
        """Status of the registrations `ask` by kcmp(2), within the step budget (beyond it, by
        inode, unverified). False when kcmp cannot be used at all."""
        afford = self.steps // max(len(regs), 1)
        asked, rest = ask[:afford], ask[afford:]
        self.steps -= len(asked) * len(regs)
        slots = [self._slot(epfd, i) for i in asked]
        codes = self.identity.kcmp([(slot[1], *slot) for slot in slots]) if slots else []
        if codes is None:
            return False
        for i, code in zip(asked, codes, strict=True):
            status[i] = _STATUS.get(code, "")  # "": gone meanwhile
        # EBADF: tfd is not open (or epfd closed meanwhile); is the registration still there?
        # Compared with epfd itself, which is open: any answer but an error says it is.
        bad = [(i, slot) for i, slot, code in zip(asked, slots, codes, strict=True)
               if code == -errno.EBADF]
        if bad:
            self.steps -= len(bad) * len(regs)
            again = self.identity.kcmp([(epfd, *slot) for _i, slot in bad])
            if again is None:
                return False
            for (i, _slot), code in zip(bad, again, strict=True):
                if code >= 0:
                    status[i] = "closed"
        if rest:
            if self.join is None:
                self.join = _Join(self.table, self.identity, self.an_epfd)
            for i in rest:
                tfd, mask, data, ino, sdev = regs[i]
                status[i] = self.join.registration(tfd, mask, (), data, ino, sdev).status
                verified[i] = False
            self.unverified += len(rest)
        return True

    def _slot(self, epfd: int, i: int) -> tuple[int, int, int]:
        """(epfd, tfd, toff): registration i of the set as KCMP_EPOLL_TFD names it."""
        return (epfd, self.regs[i][0], self.toffs[i])

    def _open_as(self, status: str | None, reg: Reg, epfd: int, i: int, verified: bool,
                 key: Any) -> tuple[int, ...]:
        tfd = reg[0]
        if status == "ok":
            return self._dups(tfd, key)
        if not status:
            return ()
        # closed or reused: which open fds hold the registered file?
        candidates = self._candidates(reg[3], reg[4])
        cost = len(candidates) * len(self.regs)
        if not verified or cost > self.steps:
            join = self.join or _Join(self.table, self.identity, self.an_epfd)
            return join.registration(tfd, reg[1], (), reg[2], reg[3], reg[4]).open_as
        self.steps -= cost
        slot = self._slot(epfd, i)
        codes = self.identity.kcmp([(fd, *slot) for fd in candidates]) or []
        return tuple(fd for fd, code in zip(candidates, codes, strict=False) if code == 0)

    def _candidates(self, ino: int | None, sdev: int | None) -> list[int]:
        """Open fds that may hold the file (ino, sdev): those whose link or stat() shows that
        inode and device (every fd when the kernel printed no inode)."""
        t = self.table
        if ino is None:
            return list(t.fds)
        key = (ino, sdev)
        return [fd for fd, fino in zip(t.fds, t.inodes, strict=True)
                if fino == ino or (fino is None and self.identity.key(fd) == key)]

    def _dups(self, tfd: int, key: Any) -> tuple[int, ...]:
        """tfd and every other fd open as the same file: the fds of its key (`key`) sorted by
        kcmp(KCMP_FILE), which orders files (kernel/kcmp.c kcmp_ptr), split where files
        differ."""
        if tfd not in self.dups:
            group = [fd for fd, k in zip(self.table.fds, self.keys, strict=True) if k == key]
            if isinstance(key, tuple) and key[0] == "socket":
                self._set_dups(group)  # a socket has one open file: its fds are dups
                return self.dups[tfd]
            kcmp = self.identity.kcmp

            def order(a: int, b: int) -> int:
                code = (kcmp([(a, b)]) or [3])[0]
                return 0 if code == 0 else -1 if code == 1 else 1 if code == 2 else \
                    (a > b) - (a < b)

            ordered = sorted(group, key=cmp_to_key(order))
            run = [ordered[0]]
            for fd in ordered[1:]:
                if order(run[-1], fd) == 0:
                    run.append(fd)
                    continue
                self._set_dups(run)
                run = [fd]
            self._set_dups(run)
        return self.dups[tfd]

    def _set_dups(self, fds: list[int]) -> None:
        holders = tuple(sorted(fds))
        for fd in fds:
            self.dups[fd] = holders


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
