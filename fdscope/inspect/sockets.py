"""Sockets from gathered text: each socket inode's protocol, state, addresses and queues, joined
from the target's /proc/PID/net tables (the tables list the whole network namespace)."""

from __future__ import annotations

from fdscope import speedups
from fdscope.errors import ParseError
from fdscope.inspect.model import SocketInfo


def join(tables: list[tuple[str, str]], inodes: set[int], pid: int
         ) -> tuple[dict[int, SocketInfo], list[str]]:
    """inode -> SocketInfo for the `inodes` found in the tables (the first table listing an
    inode wins; parsing stops once every inode is found), and errors of tables that would not
    parse (the report is partial without them)."""
    found: dict[int, SocketInfo] = {}
    errors: list[str] = []
    for table, text in tables:
        if len(found) >= len(inodes):
            break
        try:
            rows = speedups.backend.net_rows(table, text, inodes)
        except ParseError as err:
            errors.append(f"/proc/{pid}/net/{table}: {err}")
            continue
        for row in rows:
            if row[0] not in found:
                found[row[0]] = SocketInfo._make(row[1:])
    return found, errors


def listeners(found: dict[int, SocketInfo]) -> dict[str, list[int]]:
    """The inodes of the listening sockets, by the sock_diag family that knows their backlog."""
    out: dict[str, list[int]] = {"inet": [], "unix": []}
    for ino, info in found.items():
        if info.state == "LISTEN":
            out["unix" if info.proto == "unix" else "inet"].append(ino)
    return out


def with_queues(found: dict[int, SocketInfo], queues: dict[int, tuple[int, int]]) -> None:
    """Set each listener's accept queue (recv_q) and backlog (send_q) from sock_diag."""
    for ino, (rq, wq) in queues.items():
        if ino in found:
            found[ino] = found[ino]._replace(recv_q=rq, send_q=wq)
