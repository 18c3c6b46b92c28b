"""LISTEN queue sizes via NETLINK_SOCK_DIAG, as ss(8) gets them.

/proc/net/tcp shows a listener's accept queue (rx_queue) but not its backlog; only sock_diag
reports sk_max_ack_backlog (net/ipv4/inet_diag.c: for TCP_LISTEN idiag_rqueue = sk_ack_backlog,
idiag_wqueue = sk_max_ack_backlog; net/unix/diag.c sk_diag_show_rqlen does the same for unix).
The query runs in fdscope's own network namespace and reads kernel state only: callers must check
that the target shares that namespace.
"""

from __future__ import annotations

# _socket is the C module under socket.py: the same socket type and constants, without
# socket.py's import (~3 ms, mostly turning its constants into IntEnums), which inspect would
# pay on every run.
import _socket as socket
import struct
from collections.abc import Iterable, Iterator

NETLINK_SOCK_DIAG = 4  # include/uapi/linux/netlink.h
SOCK_DIAG_BY_FAMILY = 20  # include/uapi/linux/sock_diag.h
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10  # include/net/tcp_states.h
UNIX_LISTEN = 10  # unix sockets reuse TCP_LISTEN for listeners (net/unix/af_unix.c)
UDIAG_SHOW_RQLEN = 0x10  # include/uapi/linux/unix_diag.h
UNIX_DIAG_RQLEN = 4

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
_INET_REQ = struct.Struct("=BBBBI48s")
# struct inet_diag_msg: family, state, timer, retrans, sockid(48), expires, rqueue, wqueue, uid, inode
_INET_MSG = struct.Struct("=BBBB48sIIIII")
# struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
_UNIX_REQ = struct.Struct("=BBHIII8s")
# struct unix_diag_msg: family, type, state, pad, ino, cookie[2]
_UNIX_MSG = struct.Struct("=BBBBI8s")
_NLA = struct.Struct("=HH")


class DiagError(OSError):
    """The sock_diag query failed (no NETLINK_SOCK_DIAG, module missing, error reply)."""


def _replies(payload: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Send one SOCK_DIAG_BY_FAMILY dump request; yield (receive buffer, offset, length) of each
    reply message, its payload at offset + the netlink header."""
    hdr = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    unpack_hdr = _NLMSGHDR.unpack_from
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    try:
        s.settimeout(2.0)
        s.sendto(hdr + payload, (0, 0))
        while True:
            data = s.recv(1 << 16)
            if not data:
                return
            off, end = 0, len(data)
            while off + _NLMSGHDR.size <= end:
                length, mtype, _flags, _seq, _pid = unpack_hdr(data, off)
                if length < _NLMSGHDR.size:
                    raise DiagError("malformed netlink reply")
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + _NLMSGHDR.size)
                    if err:
                        raise DiagError(-err, "sock_diag query refused")
                    return
                yield data, off, length
                off += (length + 3) & ~3
    finally:
        s.close()


def _dump(payload: bytes) -> list[bytes]:
    """The payload of every reply to one dump request."""
    head = _NLMSGHDR.size
    return [data[off + head: off + length] for data, off, length in _replies(payload)]


def inet_listen_queues(inodes: Iterable[int] | None = None) -> dict[int, tuple[int, int]]:
    """inode -> (accept queue, backlog) for every TCP listener (IPv4 and IPv6) in this netns."""
    wanted = set(inodes) if inodes is not None else None
    return {inode: (rqueue, wqueue)
            for inode, (_state, rqueue, wqueue) in inet_sockets(1 << TCP_LISTEN).items()
            if wanted is None or inode in wanted}


def unix_listen_queues(inodes: Iterable[int] | None = None) -> dict[int, tuple[int, int]]:
    """inode -> (accept queue, backlog) for every unix listener in this netns."""
    wanted = set(inodes) if inodes is not None else None
    req = _UNIX_REQ.pack(socket.AF_UNIX, 0, 0, 1 << UNIX_LISTEN, 0, UDIAG_SHOW_RQLEN, b"\xff" * 8)
    try:
        replies = _dump(req)
    except OSError as err:
        raise DiagError(err.errno, f"unix_diag dump failed: {err.strerror or err}") from err
    result: dict[int, tuple[int, int]] = {}
    for msg in replies:
        if len(msg) < _UNIX_MSG.size:
            continue
        _fam, _typ, state, _pad, inode, _cookie = _UNIX_MSG.unpack_from(msg, 0)
        if state != UNIX_LISTEN or (wanted is not None and inode not in wanted):
            continue
        off = _UNIX_MSG.size
        while off + _NLA.size <= len(msg):
            nla_len, nla_type = _NLA.unpack_from(msg, off)
            if nla_len < _NLA.size:
                break
            if nla_type & 0x3FFF == UNIX_DIAG_RQLEN and nla_len >= _NLA.size + 8:
                result[inode] = struct.unpack_from("=II", msg, off + _NLA.size)
            off += (nla_len + 3) & ~3
    return result


TCP_CLOSE_WAIT = 8  # include/net/tcp_states.h
UDIAG_SHOW_PEER = 0x04  # include/uapi/linux/unix_diag.h
UNIX_DIAG_PEER = 2
# include/uapi/linux/unix_diag.h has no state names: unix sockets borrow TCP's numbers
# (net/unix/af_unix.c: TCP_ESTABLISHED once connected, TCP_LISTEN, TCP_CLOSE otherwise).
UNIX_STATES = {1: "CONNECTED", 7: "UNCONNECTED", 10: "LISTEN"}
UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}  # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET


def inet_sockets(states: int) -> dict[int, tuple[int, int, int]]:
    """inode -> (state, recv queue, send queue) of every TCP socket (IPv4 and IPv6) in this
    netns whose state's bit is set in `states` (1 << TCP_CLOSE_WAIT, ...): the kernel filters,
    so a host with 100,000 established sockets answers a CLOSE_WAIT query with only those."""
    result: dict[int, tuple[int, int, int]] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        req = _INET_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, states, b"\0" * 48)
        try:
            replies = _dump(req)
        except OSError as err:
            raise DiagError(err.errno, f"inet_diag dump failed: {err.strerror or err}") from err
        for msg in replies:
            if len(msg) < _INET_MSG.size:
                continue
            fields = _INET_MSG.unpack_from(msg, 0)
            state, rqueue, wqueue, inode = fields[1], fields[6], fields[7], fields[9]
            if states >> state & 1 and inode:
                result[inode] = (state, rqueue, wqueue)
    return result


def unix_sockets() -> dict[int, tuple[int, int, int]]:
    """inode -> (type, state, peer inode or 0) of every unix socket in this netns, with the
    peer from UNIX_DIAG_PEER as `ss -xp` shows it (net/unix/diag.c sk_diag_dump_peer: the
    other end of a connected socket; for a listener's embryo, the listener)."""
    req = _UNIX_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_PEER, b"\xff" * 8)
    try:
        replies = _dump(req)
    except OSError as err:
        raise DiagError(err.errno, f"unix_diag dump failed: {err.strerror or err}") from err
    result: dict[int, tuple[int, int, int]] = {}
    for msg in replies:
        if len(msg) < _UNIX_MSG.size:
            continue
        _fam, typ, state, _pad, inode, _cookie = _UNIX_MSG.unpack_from(msg, 0)
        peer = 0
        off = _UNIX_MSG.size
        while off + _NLA.size <= len(msg):
            nla_len, nla_type = _NLA.unpack_from(msg, off)
            if nla_len < _NLA.size:
                break
            if nla_type & 0x3FFF == UNIX_DIAG_PEER and nla_len >= _NLA.size + 4:
                (peer,) = struct.unpack_from("=I", msg, off + _NLA.size)
            off += (nla_len + 3) & ~3
        result[inode] = (typ, state, peer)
    return result


# (state, inode) where they lie in a unix_diag_msg (offsets 2 and 4), unpacked in place by
# _dump_fields.
_UNIX_STATE_INODE = struct.Struct("=2xBxI")


def _dump_fields(payload: bytes, fields: struct.Struct) -> list[tuple[int, ...]]:
    """One dump, each reply's `fields` unpacked where the reply lies in the receive buffer: no
    copy per socket, the form for dumps of every socket."""
    head, unpack = _NLMSGHDR.size, fields.unpack_from
    need = head + fields.size
    return [unpack(data, off + head) for data, off, length in _replies(payload)
            if length >= need]


def unix_states() -> dict[int, int]:
    """inode -> state of every unix socket in this netns (UNIX_STATES names them): the dump
    without attributes (show = 0), for dumps of every socket."""
    req = _UNIX_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, 0, b"\xff" * 8)
    try:
        rows = _dump_fields(req, _UNIX_STATE_INODE)
    except OSError as err:
        raise DiagError(err.errno, f"unix_diag dump failed: {err.strerror or err}") from err
    return {inode: state for state, inode in rows}
