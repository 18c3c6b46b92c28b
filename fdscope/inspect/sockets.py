"""Sockets from gathered text: each socket inode's protocol, state, addresses and queues, joined
from the target's /proc/PID/net tables (the tables list the whole network namespace)."""

from __future__ import annotations

from functools import partial
from operator import itemgetter

from fdscope import speedups
from fdscope.errors import ParseError
from fdscope.inspect.model import SocketInfo

_new_info = partial(tuple.__new__, SocketInfo)


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
        infos = dict(zip(map(itemgetter(0), rows),
                         map(_new_info, map(itemgetter(slice(1, None)), rows)), strict=True))
        infos.update(found)  # the earlier tables' rows win
        found = infos
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


def unlisted(protocols: dict[int, str]) -> dict[int, SocketInfo]:
    """fd -> SocketInfo for sockets the net tables do not list, from their sockfs protocol
    name. The tables list only sockets in the kernel's lookup tables (net/ipv4/tcp_ipv4.c
    tcp4_seq_show walks the hashes): a TCP socket missing there is closed (reset by its peer,
    never connected, bound without listen()) unless it comes from another network namespace,
    and a UDP or raw one unbound."""
    out = {}
    for fd, name in protocols.items():
        base, six = (name[:-2], "6") if name.endswith("v6") else (name, "")
        proto = base.lower() + six
        state = {"tcp": "CLOSE", "udp": "UNCONN", "raw": "UNCONN", "udplite": "UNCONN"}.get(
            base.lower(), "UNKNOWN")
        out[fd] = SocketInfo(proto, state, None, None, None, None)
    return out
