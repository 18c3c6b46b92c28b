"""Parse the socket tables of /proc/PID/net/ (tcp, tcp6, udp, udp6, raw, raw6, unix, netlink, packet)."""

from __future__ import annotations

import dataclasses
import re
import socket
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

from fdscope.errors import ParseError
from fdscope.parse.states import (  # noqa: F401 - re-exported: the state names live there
    SO_ACCEPTCON,
    TCP_CLOSE,
    TCP_LISTEN,
    TCP_STATES,
    UNIX_STATES,
    inet_state,
)


@dataclass(frozen=True)
class NetSocket:
    """One socket from a /proc/net table, keyed by its inode (the N of "socket:[N]").

    `local`/`remote` are "127.0.0.1:8080", "[::1]:8080", a unix path, "@abstract", or None (remote
    of an unconnected socket, local of an unnamed unix socket). `recv_q`/`send_q` are None where
    the table does not carry them (send_q of a TCP LISTEN socket: the backlog needs sock_diag)."""

    inode: int
    proto: str
    state: str
    local: str | None
    remote: str | None
    recv_q: int | None
    send_q: int | None
    uid: int | None
    sock_type: str | None = None


INET_PROTOS = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")

# include/linux/net.h enum sock_type (the Type column of /proc/net/unix and /proc/net/packet).
SOCK_TYPES: dict[int, str] = {
    1: "stream",
    2: "dgram",
    3: "raw",
    4: "rdm",
    5: "seqpacket",
    6: "dccp",
    10: "packet",
}
# include/uapi/linux/netlink.h protocol numbers, named as ss(8) names them.
NETLINK_PROTOS: dict[int, str] = {
    0: "rtnl",
    1: "unused",
    2: "usersock",
    3: "fw",
    4: "tcpdiag",
    5: "nflog",
    6: "xfrm",
    7: "selinux",
    8: "iscsi",
    9: "audit",
    10: "fiblookup",
    11: "connector",
    12: "nft",
    13: "ip6fw",
    14: "dec-rt",
    15: "uevent",
    16: "genl",
    18: "scsi-trans",
    19: "ecryptfs",
    20: "rdma",
    21: "crypto",
    22: "smc",
}

_HEX = re.compile(r"[0-9A-Fa-f]+", re.ASCII)
_DEC = re.compile(r"-?[0-9]+", re.ASCII)
_UDEC = re.compile(r"[0-9]+", re.ASCII)
_ADDR = re.compile(r"([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})", re.ASCII)


def _num(text: str, pattern: re.Pattern[str], base: int, what: str, line: str) -> int:
    if not pattern.fullmatch(text):
        raise ParseError(what, f"bad number {text!r} in line {line!r}")
    return int(text, base)


def _hex_to_ip(hexaddr: str, byteorder: str) -> str:
    raw = bytes.fromhex(hexaddr)
    if byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    # inet_ntop, as ss(8) uses: "::ffff:127.0.0.1" for v4-mapped, RFC 5952 zero compression.
    return socket.inet_ntop(socket.AF_INET6, raw)


def decode_inet_address(text: str, byteorder: str = sys.byteorder) -> tuple[str, int]:
    """Decode "0100007F:1F90" (IPv4) or 32 hex digits + port (IPv6) to (address, port).

    net/ipv4/tcp_ipv4.c get_tcp4_sock prints the address as one 32-bit word and
    net/ipv6/tcp_ipv6.c as four, each with %08X of the in-memory (network-order) bytes, so each
    word appears in host byte order (byte-swapped on little-endian x86_64/aarch64)."""
    match = _ADDR.fullmatch(text)
    if match is None:
        raise ParseError("socket address", repr(text))
    return _hex_to_ip(match.group(1), byteorder), int(match.group(2), 16)


def format_inet(address: str, port: int) -> str:
    """Format as "127.0.0.1:8080" or "[::1]:8080"."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _skip_header(text: str, first_word: str) -> list[str]:
    lines = [line for line in text.split("\n") if line.strip()]
    if lines and lines[0].split()[0] == first_word:
        return lines[1:]
    return lines


_H = "[0-9A-Fa-f]"
# get_tcp4_sock: "%4d: %08X:%04X %08X:%04X %02X %08X:%08X %02X:%08lX %08X %5u %8d %lu ..."
# (udp, raw and the IPv6 tables share the layout; IPv6 addresses are 32 hex digits).
_INET_LINE = re.compile(
    rf" *[0-9]+: ({_H}{{8}}|{_H}{{32}}):({_H}{{4}}) ({_H}{{8}}|{_H}{{32}}):({_H}{{4}}) ({_H}+) "
    rf"({_H}+):({_H}+) +\S+ +\S+ +([0-9]+) +\S+ +([0-9]+)(?: .*)?",
    re.ASCII,
)
_SOCK_TYPE_OF = {"tcp": "stream", "udp": "dgram", "raw": "raw"}


def parse_inet(text: str, proto: str, byteorder: str = sys.byteorder) -> list[NetSocket]:
    """Parse /proc/net/{tcp,tcp6,udp,udp6,raw,raw6}.

    Columns (net/ipv4/tcp_ipv4.c get_tcp4_sock, udp.c udp4_format_sock, raw.c raw_sock_seq_show):
    sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    For TCP LISTEN sockets rx_queue is the accept queue (sk_ack_backlog) and tx_queue is 0, so
    send_q is None there. UDP and raw state 07 (TCP_CLOSE) is "UNCONN", as ss(8) shows it."""
    if proto not in INET_PROTOS:
        raise ParseError(f"/proc/net/{proto}", "unknown protocol table")
    what = f"/proc/net/{proto}"
    is_tcp = proto.startswith("tcp")
    sock_type = _SOCK_TYPE_OF[proto.rstrip("6")]
    addrs: dict[str, str] = {}
    sockets = []
    for line in _skip_header(text, "sl"):
        match = _INET_LINE.fullmatch(line)
        if match is None:
            _raise_inet_error(what, line)
        laddr, lport, raddr, rport, st_hex, tx_hex, rx_hex, uid, inode = match.groups()
        state, local, remote, recv_q, send_q = inet_fields(
            is_tcp, laddr, int(lport, 16), raddr, int(rport, 16), int(st_hex, 16),
            int(tx_hex, 16), int(rx_hex, 16), addrs, byteorder)
        sockets.append(
            NetSocket(int(inode), proto, state, local, remote, recv_q, send_q, int(uid), sock_type)
        )
    return sockets


def inet_fields(
    is_tcp: bool, laddr: str, lport: int, raddr: str, rport: int, st: int, tx_queue: int,
    rx_queue: int, addrs: dict[str, str], byteorder: str = sys.byteorder,
) -> tuple[str, str, str | None, int, int | None]:
    """(state, local, remote, recv_q, send_q) of one inet table row from its columns (addresses
    as the table's hex, the rest as numbers); `addrs` caches hex -> address text."""
    local_ip = addrs.get(laddr)
    if local_ip is None:
        local_ip = addrs[laddr] = _hex_to_ip(laddr, byteorder)
    if rport == 0 and raddr.count("0") == len(raddr):
        remote = None
    else:
        remote_ip = addrs.get(raddr)
        if remote_ip is None:
            remote_ip = addrs[raddr] = _hex_to_ip(raddr, byteorder)
        remote = format_inet(remote_ip, rport)
    state, send_q = inet_state(is_tcp, st, tx_queue)
    return state, format_inet(local_ip, lport), remote, rx_queue, send_q


def _raise_inet_error(what: str, line: str) -> NoReturn:
    """Raise a ParseError naming the first column of `line` that is wrong."""
    parts = line.split()
    if len(parts) < 10 or not parts[0].endswith(":"):
        raise ParseError(what, f"short line {line!r}")
    decode_inet_address(parts[1])
    decode_inet_address(parts[2])
    queues = parts[4].split(":")
    if len(queues) != 2:
        raise ParseError(what, f"bad queue column {parts[4]!r}")
    for text in (parts[3], *queues):
        _num(text, _HEX, 16, what, line)
    for text in (parts[7], parts[9]):
        _num(text, _UDEC, 10, what, line)
    raise ParseError(what, f"malformed line {line!r}")


# net/unix/af_unix.c unix_seq_show: "%pK: %08X %08X %08X %04X %02X %5lu" then " PATH" if bound.
_UNIX_LINE = re.compile(
    r"([0-9A-Fa-f]+): ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) ([0-9A-Fa-f]+) "
    r"([0-9A-Fa-f]+) +([0-9]+)(?: (.*))?",
    re.ASCII | re.DOTALL,
)


def parse_unix(text: str) -> list[NetSocket]:
    """Parse /proc/net/unix.

    LISTEN when Flags has __SO_ACCEPTCON, else the St column: 03 CONNECTED / 01 UNCONNECTED for a
    socket with a file; 02 CONNECTING / 04 DISCONNECTING for one without (unix_seq_show: an
    accepted-but-not-yet-accept()ed connection is 02, with inode 0). The path may be absent (unnamed), start with "@" (abstract;
    the kernel prints its NUL bytes as "@") and contain spaces; the kernel prints a path's bytes
    verbatim, so a newline in a path continues on the next line."""
    sockets: list[NetSocket] = []
    for line in _skip_header(text, "Num"):
        match = _UNIX_LINE.fullmatch(line)
        if match is None:
            if sockets and sockets[-1].local is not None:
                last = sockets[-1]
                sockets[-1] = dataclasses.replace(last, local=f"{last.local}\n{line}")
                continue
            raise ParseError("/proc/net/unix", f"bad line {line!r}")
        flags = int(match.group(4), 16)
        sock_type = int(match.group(5), 16)
        st = int(match.group(6), 16)
        path = match.group(8)
        if flags & SO_ACCEPTCON:
            state = "LISTEN"
        else:
            state = UNIX_STATES.get(st, f"{st:#04x}")
        sockets.append(
            NetSocket(
                inode=int(match.group(7)),
                proto="unix",
                state=state,
                local=path if path else None,
                remote=None,
                recv_q=None,
                send_q=None,
                uid=None,
                sock_type=SOCK_TYPES.get(sock_type, f"{sock_type:#x}"),
            )
        )
    return sockets


def parse_netlink(text: str) -> list[NetSocket]:
    """Parse /proc/net/netlink (net/netlink/af_netlink.c netlink_seq_show).

    Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode. local is "PROTO:PORTID" as ss(8)
    names the protocol (rtnl, genl, ...); recv_q/send_q are Rmem/Wmem; state is UNCONN."""
    what = "/proc/net/netlink"
    sockets = []
    for line in _skip_header(text, "sk"):
        parts = line.split()
        if len(parts) < 10:
            raise ParseError(what, f"short line {line!r}")
        eth = _num(parts[1], _UDEC, 10, what, line)
        portid = _num(parts[2], _UDEC, 10, what, line)
        rmem = _num(parts[4], _DEC, 10, what, line)
        wmem = _num(parts[5], _DEC, 10, what, line)
        inode = _num(parts[9], _UDEC, 10, what, line)
        sockets.append(
            NetSocket(
                inode=inode,
                proto="netlink",
                state="UNCONN",
                local=f"{NETLINK_PROTOS.get(eth, str(eth))}:{portid}",
                remote=None,
                recv_q=rmem,
                send_q=wmem,
                uid=None,
                sock_type=None,
            )
        )
    return sockets


def parse_packet(text: str) -> list[NetSocket]:
    """Parse /proc/net/packet (net/packet/af_packet.c packet_seq_show).

    Columns: sk RefCnt Type Proto Iface R Rmem User Inode. local is "0xPROTO:IFINDEX" (ethertype
    in hex, ifindex 0 = any interface); recv_q is Rmem; uid is User."""
    what = "/proc/net/packet"
    sockets = []
    for line in _skip_header(text, "sk"):
        parts = line.split()
        if len(parts) < 9:
            raise ParseError(what, f"short line {line!r}")
        sock_type = _num(parts[2], _UDEC, 10, what, line)
        ether = _num(parts[3], _HEX, 16, what, line)
        iface = _num(parts[4], _DEC, 10, what, line)
        rmem = _num(parts[6], _DEC, 10, what, line)
        uid = _num(parts[7], _UDEC, 10, what, line)
        inode = _num(parts[8], _UDEC, 10, what, line)
        sockets.append(
            NetSocket(
                inode=inode,
                proto="packet",
                state="UNCONN",
                local=f"{ether:#06x}:{iface}",
                remote=None,
                recv_q=rmem,
                send_q=None,
                uid=uid,
                sock_type=SOCK_TYPES.get(sock_type, f"{sock_type:#x}"),
            )
        )
    return sockets


# The column holding the inode in each table (the inet tables': 9).
_INODE_COLUMN = {"unix": 6, "netlink": 9, "packet": 8}
# unix_seq_show rows whole, without a path holding a newline (then parse_unix decides).
_UNIX_ROW = re.compile(r"^[0-9a-fA-F]+: [0-9A-F]+ [0-9A-F]+ ([0-9A-F]+) [0-9A-F]+ ([0-9A-F]+) +"
                       r"([0-9]+)(?: (.*))?$", re.MULTILINE | re.ASCII)


def socket_rows(table: str, text: str, inodes: set[int] | None) -> list[tuple[Any, ...]]:
    """Rows of one /proc/PID/net table as (inode, proto, state, local, remote, recv_q, send_q),
    only for `inodes` (None: every row), in table order. Raises ParseError for a malformed row.
    The C accelerator's net_rows is its twin (for unix and the inet tables)."""
    if table == "unix":
        fast = _unix_rows(text, inodes)
        if fast is not None:
            return fast
    sub = _only_inodes(text, table, inodes) if inodes is not None else text
    if sub is None:
        return []
    if table == "unix":
        rows = parse_unix(sub)
    elif table == "netlink":
        rows = parse_netlink(sub)
    elif table == "packet":
        rows = parse_packet(sub)
    else:
        rows = parse_inet(sub, table)
    return [(r.inode, r.proto, r.state, r.local, r.remote, r.recv_q, r.send_q) for r in rows]


def _unix_rows(text: str, inodes: set[int] | None) -> list[tuple[Any, ...]] | None:
    """socket_rows of /proc/net/unix by one regex; None to fall back to parse_unix (unexpected
    header, or a path holding a newline)."""
    if not text.startswith("Num"):
        return None
    rows = _UNIX_ROW.findall(text)
    if len(rows) != text.count("\n") - 1:
        return None
    out: list[tuple[Any, ...]] = []
    for flags, st, ino_s, path in rows:
        ino = int(ino_s)
        if inodes is not None and ino not in inodes:
            continue
        if int(flags, 16) & SO_ACCEPTCON:
            state = "LISTEN"
        else:
            state = UNIX_STATES.get(int(st, 16)) or f"{int(st, 16):#04x}"
        out.append((ino, "unix", state, path or None, None, None, None))
    return out


def _only_inodes(text: str, table: str, inodes: set[int]) -> str | None:
    """The table's header plus only the rows for `inodes` (a cheap filter before parsing)."""
    head, _, body = text.partition("\n")
    if not body.strip():
        return None
    col = _INODE_COLUMN.get(table, 9)
    keep = [head]
    kept = False
    for line in body.splitlines():
        parts = line.split(None, col + 1)
        if len(parts) > col and parts[col].isascii() and parts[col].isdigit():
            kept = int(parts[col]) in inodes
            if kept:
                keep.append(line)
        elif table == "unix":
            if kept:
                keep.append(line)  # a unix path holding a newline continues on the next line
        else:
            keep.append(line)  # malformed: let the parser say so
    if len(keep) == 1:
        return None
    return "\n".join(keep) + "\n"


def parse_netstat(text: str) -> dict[str, dict[str, int]]:
    """/proc/PID/net/netstat (and net/snmp): pairs of lines "Prefix: Name Name ..." and
    "Prefix: value value ..." (net/ipv4/proc.c netstat_seq_show) as {prefix: {name: value}}.
    A pair whose names and values do not line up is left out."""
    out: dict[str, dict[str, int]] = {}
    lines = [line for line in text.split("\n") if line.strip()]
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        head, _, keys = names.partition(":")
        head2, _, vals = values.partition(":")
        keys_l, vals_l = keys.split(), vals.split()
        if head != head2 or len(keys_l) != len(vals_l) or not all(
                v.lstrip("-").isascii() and v.lstrip("-").isdigit() for v in vals_l):
            continue
        out[head] = dict(zip(keys_l, map(int, vals_l), strict=True))
    return out
