"""The state of every socket the scan's processes hold, by network namespace.

A socket fd names only an inode (`socket:[INODE]`, fs/proc/fd.c); its protocol and state are
in the socket tables of its network namespace, /proc/PID/net/{tcp,tcp6,udp,udp6,unix} of any
process in that namespace (net/ipv4/tcp_ipv4.c tcp4_seq_show, net/ipv4/udp.c, net/unix/
af_unix.c unix_seq_show). Each namespace's tables are read once per scrape, through one of its
processes, and parsed for the inodes held there only (speedups.backend.net_rows). A socket in
none of these tables (netlink, packet, raw, vsock; or a namespace whose tables could not be
read) counts as protocol `other`, state `unknown`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fdscope import speedups
from fdscope.errors import FdscopeError, NoSuchProcess, ParseError, ProcGone
from fdscope.proc import Proc

# table -> the `protocol` label
TABLES = {"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "unix": "unix"}
UNKNOWN = ("other", "unknown")
# Processes of a namespace tried in turn when its tables vanish (the holder exited).
HOLDERS_TRIED = 3


def netns_of(proc: Proc, pid: int) -> int | None:
    """The network namespace's inode ("net:[INODE]", fs/nsfs.c ns_dname), None if unreadable."""
    try:
        link = proc.readlink(pid, "ns", "net", pid=pid)
    except FdscopeError:
        return None
    inner = link[5:-1]
    return int(inner) if link.startswith("net:[") and inner.isascii() and inner.isdigit() \
        else None


def socket_states(proc: Proc, sockets: dict[int, Iterable[int]]
                  ) -> tuple[dict[int, Counter[tuple[str, str]]], list[str]]:
    """pid -> Counter of (protocol, state) of its sockets (`sockets`: pid -> socket inodes),
    and the errors met (one line each: a namespace whose table could not be read)."""
    errors: list[str] = []
    by_ns: dict[int, tuple[list[int], set[int]]] = {}
    ns_of: dict[int, int | None] = {}
    held: dict[int, list[int]] = {}
    for pid, inodes in sockets.items():
        inos = list(inodes)
        if not inos:
            continue
        held[pid] = inos
        ns = ns_of[pid] = netns_of(proc, pid)
        if ns is None:
            continue
        entry = by_ns.setdefault(ns, ([], set()))
        entry[0].append(pid)
        entry[1].update(inos)
    state_of: dict[int | None, dict[int, tuple[str, str]]] = {}
    for ns, (pids, wanted) in by_ns.items():
        state_of[ns] = _read_ns(proc, pids, wanted, errors)
    out: dict[int, Counter[tuple[str, str]]] = {}
    for pid, inos in held.items():
        states = state_of.get(ns_of.get(pid), {})
        out[pid] = Counter(states.get(ino, UNKNOWN) for ino in inos)
    return out, errors


def _read_ns(proc: Proc, pids: list[int], wanted: set[int], errors: list[str]
             ) -> dict[int, tuple[str, str]]:
    """inode -> (protocol, state) of `wanted` from the tables of the first of `pids` (all in
    one namespace) that is still there."""
    states: dict[int, tuple[str, str]] = {}
    for pid in pids[:HOLDERS_TRIED]:
        try:
            for table, proto in TABLES.items():
                try:
                    text = proc.read_text(pid, "net", table, pid=pid)
                except ProcGone:
                    continue  # no such table here (a kernel without IPv6)
                try:
                    rows = speedups.backend.net_rows(table, text, wanted)
                except ParseError as err:
                    errors.append(f"net/{table} of pid {pid}: {err}")
                    continue
                for row in rows:
                    states[row[0]] = (proto, row[2])
        except NoSuchProcess:
            states.clear()  # exited mid-read: the next holder's tables, all of them
            continue
        except FdscopeError as err:
            errors.append(f"net tables of pid {pid}: {err}")
        return states
    return states
