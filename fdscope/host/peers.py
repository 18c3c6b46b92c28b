"""Who holds the other end: the host-wide index of pipes and sockets, and the peers of one
process's fds (`fdscope inspect PID --peers`), as lsfd's ENDPOINTS column and `ss -xp` show
them.

- a pipe (pipefs "pipe:[INODE]", or a named FIFO): every other fd on the host open on the same
  pipe, with its end (read or write, from its fdinfo flags);
- a unix socket: the process(es) holding its peer, the inode sock_diag reports as
  UNIX_DIAG_PEER (net/unix/diag.c sk_diag_dump_peer), and those holding the same socket;
- any other socket: the other processes holding the same socket (a listener shared by forked
  workers, a socket passed with SCM_RIGHTS).
The index comes from a host scan (fdscope.host.scan.Scanner with index=True): the fd tables
`fdscope top` reads. sock_diag answers for fdscope's own network namespace only.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from fdscope.errors import FdscopeError
from fdscope.host.scan import ProcessFilter, Scanner
from fdscope.proc import Proc

Key = tuple[str, int]


class Holder(NamedTuple):
    pid: int
    name: str
    fd: int
    end: str | None = None  # pipes: "read" or "write" (the fd's access mode)

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "fd": self.fd, "end": self.end}


class Peer(NamedTuple):
    """The other holders of one fd's pipe or socket. relation: "peer" (the other end of a unix
    socket), "pipe" (the same pipe: its other end, or other holders of this end), "shared"
    (the same socket, held by other fds)."""

    fd: int
    type: str  # pipe, unix, socket
    inode: int
    relation: str
    state: str | None  # unix: CONNECTED, LISTEN, UNCONNECTED; pipe: this fd's end
    peer_inode: int | None
    holders: tuple[Holder, ...]

    def to_json(self) -> dict[str, Any]:
        return {"fd": self.fd, "type": self.type, "inode": self.inode,
                "relation": self.relation, "state": self.state, "peer_inode": self.peer_inode,
                "holders": [h.to_json() for h in self.holders]}


class HostIndex:
    """(kind, inode) -> [(pid, fd)] for every pipe and socket fd the scan could read, and the
    process names. kind: "pipe" (pipefs), "fifo" (a named pipe, by its inode), "socket"."""

    def __init__(self, scanner: Scanner, names: dict[int, str]) -> None:
        self.names = names
        self.holders: dict[Key, list[tuple[int, int]]] = {}
        self.denied = 0
        for pid, t in scanner.tables.items():
            table = t.table
            if table is None:
                continue
            for fd, link, typ, ino in zip(table.fds, table.links, table.types, table.inodes,
                                          strict=True):
                if ino is None or typ not in ("pipe", "socket"):
                    continue
                kind = "socket" if typ == "socket" else "pipe" if link[:6] == "pipe:[" \
                    else "fifo"
                self.holders.setdefault((kind, ino), []).append((pid, fd))

    @classmethod
    def scan(cls, proc: Proc | None = None) -> HostIndex:
        """A host scan for the index (no flags; every process)."""
        scanner = Scanner(proc, select=ProcessFilter(), flags=False, index=True)
        snap = scanner.scan()
        index = cls(scanner, {r.pid: r.name for r in snap.processes})
        index.denied = snap.host.denied
        return index


def _end(proc: Proc, pid: int, fd: int) -> str | None:
    """"read" or "write": the access mode in the fd's fdinfo flags (O_ACCMODE)."""
    from fdscope.parse.fdinfo import fdinfo_head

    try:
        head = fdinfo_head(proc.read_text(pid, "fdinfo", fd, pid=pid))
    except FdscopeError:
        return None
    if head is None:
        return None
    mode = head[0] & os.O_ACCMODE
    return {os.O_RDONLY: "read", os.O_WRONLY: "write"}.get(mode, "read/write")


def peers_for(pid: int, fds: list[Any], index: HostIndex, proc: Proc | None = None,
              unix: dict[int, tuple[int, int, int]] | None = None
              ) -> tuple[list[Peer], list[str]]:
    """The peers of `fds` (fdscope.inspect.model.FdEntry rows of process pid), and notes.
    unix: inode -> (type, state, peer) from sock_diag (read here when None)."""
    from fdscope import netdiag

    proc = proc or Proc()
    notes: list[str] = []
    if unix is None:
        try:
            unix = netdiag.unix_sockets()
        except OSError as err:
            unix = {}
            notes.append(f"sock_diag (unix) failed, unix peers unknown: {err}")
    out: list[Peer] = []
    for e in fds:
        if e.inode is None or e.type not in ("pipe", "socket"):
            continue
        if e.type == "pipe":
            kind = "pipe" if e.target.startswith("pipe:[") else "fifo"
            others = [(p, f) for p, f in index.holders.get((kind, e.inode), ())
                      if (p, f) != (pid, e.fd)]
            if others:
                out.append(Peer(e.fd, "pipe", e.inode, "pipe", _end(proc, pid, e.fd), None,
                                tuple(Holder(p, index.names.get(p, "?"), f, _end(proc, p, f))
                                      for p, f in others)))
            continue
        shared = [(p, f) for p, f in index.holders.get(("socket", e.inode), ())
                  if (p, f) != (pid, e.fd)]
        diag = unix.get(e.inode)
        if diag is not None:
            typ, state, peer = diag
            state_name = netdiag.UNIX_STATES.get(state, str(state))
            if peer:
                holders = index.holders.get(("socket", peer), [])
                out.append(Peer(e.fd, "unix", e.inode, "peer", state_name, peer,
                                tuple(Holder(p, index.names.get(p, "?"), f) for p, f in holders)))
            if shared:
                out.append(Peer(e.fd, "unix", e.inode, "shared", state_name, None,
                                tuple(Holder(p, index.names.get(p, "?"), f) for p, f in shared)))
            continue
        if shared:
            state = e.socket.state if e.socket is not None else None
            out.append(Peer(e.fd, "socket", e.inode, "shared", state, None,
                            tuple(Holder(p, index.names.get(p, "?"), f) for p, f in shared)))
    if index.denied:
        notes.append(f"{index.denied} process(es) could not be read (permission): peers they "
                     "hold are not shown")
    return out, notes
