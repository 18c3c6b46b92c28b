"""The state of every socket the scan's processes hold, by network namespace.

A socket fd names only an inode (`socket:[INODE]`, fs/proc/fd.c); its protocol and state are
known to the network namespace it lives in. fdscope's own namespace is asked by sock_diag
(fdscope.netdiag: every TCP socket in any state, every unix socket; the kernel's binary dump
costs about half of reading and parsing the text tables); UDP, and every other namespace, from
the socket tables /proc/PID/net/{tcp,tcp6,udp,udp6,unix} of one of its processes
(net/ipv4/tcp_ipv4.c tcp4_seq_show, net/ipv4/udp.c, net/unix/af_unix.c unix_seq_show), parsed
for the inodes held there only (speedups.backend.net_rows). Each namespace is read once per
scrape. A socket found in none of them (netlink, packet, raw, vsock; or a namespace that could
not be read) counts as protocol `other`, state `unknown`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fdscope import speedups
from fdscope.errors import FdscopeError, NoSuchProcess, ParseError, ProcGone
from fdscope.parse.states import TCP_STATES
from fdscope.proc import DEFAULT_ROOT, Proc

# table -> the `protocol` label
TABLES = {"tcp": "tcp", "tcp6": "tcp", "udp": "udp", "udp6": "udp", "unix": "unix"}
UNKNOWN = ("other", "unknown")
# Processes of a namespace tried in turn when its tables vanish (the holder exited).
HOLDERS_TRIED = 3


def netns_of(proc: Proc, pid: int | str) -> int | None:
    """The network namespace's inode ("net:[INODE]", fs/nsfs.c ns_dname), None if unreadable."""
    try:
        link = proc.readlink(pid, "ns", "net", pid=pid if isinstance(pid, int) else None)
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
    own = netns_of(proc, "self") if proc.root == DEFAULT_ROOT else None
    for ns, (pids, wanted) in by_ns.items():
        diag = _diag() if ns == own else None
        if diag is not None:
            state_of[ns] = diag
            state_of[ns].update(_read_ns(proc, pids, wanted, errors, ("udp", "udp6")))
        else:
            state_of[ns] = _read_ns(proc, pids, wanted, errors, tuple(TABLES))
    out: dict[int, Counter[tuple[str, str]]] = {}
    for pid, inos in held.items():
        counts = Counter(map(state_of.get(ns_of.get(pid), {}).get, inos))
        missing = counts.pop(None, 0)
        if missing:
            counts[UNKNOWN] += missing
        out[pid] = counts
    return out, errors


def _diag() -> dict[int, tuple[str, str]] | None:
    """inode -> (protocol, state) of every TCP and unix socket in fdscope's own namespace, by
    sock_diag; None when it failed (no NETLINK_SOCK_DIAG: the text tables answer, which is no
    error)."""
    from fdscope import netdiag

    try:
        tcp = {ino: st for ino, (st, _rq, _wq) in
               netdiag.inet_sockets((1 << (max(TCP_STATES) + 1)) - 1).items()}
        unix = netdiag.unix_states()
    except OSError:
        return None
    # one (protocol, state) tuple per state, shared by its sockets
    tcp_key = {st: ("tcp", TCP_STATES.get(st) or str(st)) for st in set(tcp.values())}
    unix_key = {st: ("unix", netdiag.UNIX_STATES.get(st) or str(st)) for st in set(unix.values())}
    out = {ino: tcp_key[st] for ino, st in tcp.items()}
    out.update((ino, unix_key[st]) for ino, st in unix.items())
    return out


def _read_ns(proc: Proc, pids: list[int], wanted: set[int], errors: list[str],
             tables: tuple[str, ...]) -> dict[int, tuple[str, str]]:
    """inode -> (protocol, state) of `wanted` from `tables` of the first of `pids` (all in
    one namespace) that is still there."""
    states: dict[int, tuple[str, str]] = {}
    for pid in pids[:HOLDERS_TRIED]:
        try:
            for table in tables:
                proto = TABLES[table]
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
