"""/proc/net table parsing on text captured from Linux 6.18, plus live sockets."""

import os
import socket

import pytest

from fdscope.errors import ParseError
from fdscope.parse.net import (
    NetSocket,
    decode_inet_address,
    parse_inet,
    parse_netlink,
    parse_packet,
    parse_unix,
)

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:AF6B 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 4527 2 000000004049a011 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1590 1 00000000f953b996 100 0 0 10 0
   2: 0100007F:AF6B 0100007F:E4D6 01 00000000:00000000 00:00000000 00000000     0        0 0 1 000000007abfb78a 20 0 0 10 -1
   3: 0100007F:E4D6 0100007F:AF6B 08 0000001A:000002F0 00:00000000 00000000  1000        0 4530 2 000000000d6ce0c9 20 0 0 10 -1
"""
UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
13576: 00000000000000000000000001000000:AADB 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4531 2 00000000e526ac32 0
  812: 0000000000000000FFFF00000100007F:0035 0000000000000000FFFF00000200007F:1F90 01 00000000:00000300 00:00000000 00000000   101        0 4600 2 00000000e526ac33 0
"""
UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
00000000f331681d: 00000003 00000000 00000000 0001 03  4525
0000000084304062: 00000002 00000000 00010000 0001 01  4529 /tmp/my sock path
0000000083a4f5b9: 00000002 00000000 00010000 0001 01  4528 @abs name
00000000aaaaaaaa: 00000002 00000000 00000000 0002 01 123456 /run/systemd/notify
00000000bbbbbbbb: 00000002 00000000 00000000 0005 02  4600 @
"""
NETLINK = """\
sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode
00000000a14a63bb 0   0          00000000 0        0        0     2        0        4
00000000ad5083b3 16  4242       00000001 768      0        0     2        0        1499
"""
PACKET = """\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
00000000a14a63bb 3      3    0003   2     1 0      0      52345
"""


def test_tcp_little_endian():
    socks = parse_inet(TCP, "tcp", byteorder="little")
    assert socks[0] == NetSocket(
        4527, "tcp", "LISTEN", "127.0.0.1:44907", None, 1, None, 0, "stream"
    )
    assert socks[1].local == "0.0.0.0:2024" and socks[1].recv_q == 0 and socks[1].send_q is None
    assert (socks[2].state, socks[2].remote, socks[2].inode) == (
        "ESTABLISHED",
        "127.0.0.1:58582",
        0,
    )
    close_wait = socks[3]
    assert (close_wait.state, close_wait.send_q, close_wait.recv_q, close_wait.uid) == (
        "CLOSE_WAIT",
        0x1A,
        0x2F0,
        1000,
    )


def test_tcp_big_endian_word_order():
    (sock,) = parse_inet(TCP.splitlines()[0] + "\n" + TCP.splitlines()[1], "tcp", byteorder="big")
    assert sock.local == "1.0.0.127:44907"


def test_udp6_unconn_and_mapped():
    unconn, mapped = parse_inet(UDP6, "udp6", byteorder="little")
    assert (unconn.state, unconn.local, unconn.remote) == ("UNCONN", "[::1]:43739", None)
    assert (mapped.state, mapped.local, mapped.remote) == (
        "ESTABLISHED",
        "[::ffff:127.0.0.1]:53",
        "[::ffff:127.0.0.2]:8080",
    )
    assert mapped.recv_q == 0x300 and mapped.uid == 101


def test_empty_tables_and_header_only():
    assert parse_inet("", "tcp") == []
    assert parse_inet(TCP.splitlines()[0] + "\n", "tcp") == []
    assert parse_unix("Num       RefCount Protocol Flags    Type St Inode Path\n") == []


@pytest.mark.parametrize(
    "line",
    [
        "   0: 0100007F:AF6B 00000000:0000 0A 00000000",
        "   0: 0100007Z:AF6B 00000000:0000 0A 00000000:00000001 00:00000000 00000000 0 0 1",
        "   0: 0100007F:AF6B 00000000:0000 0A 00000000-00000001 00:00000000 00000000 0 0 1",
        "   0: 0100007F:AF6B 00000000:0000 0A 00000000:00000001 00:00000000 00000000 0 0 x",
    ],
)
def test_inet_malformed(line):
    with pytest.raises(ParseError):
        parse_inet(TCP.splitlines()[0] + "\n" + line + "\n", "tcp")


def test_unknown_inet_proto():
    with pytest.raises(ParseError):
        parse_inet("", "sctp")


def test_decode_inet_address():
    assert decode_inet_address("0100007F:1F90", "little") == ("127.0.0.1", 8080)
    assert decode_inet_address("B80D0120000000000000000001000000:0016", "little") == (
        "2001:db8::1",
        22,
    )
    # inet_ntop spellings, as ss(8) prints them: RFC 5952 compression, dotted v4-mapped tail.
    assert decode_inet_address("00000000000000000000000000000000:0000", "little") == ("::", 0)
    assert decode_inet_address("0000000000000000FFFF00000100007F:0050", "little") == (
        "::ffff:127.0.0.1",
        80,
    )
    assert decode_inet_address("B80D0120000000000100000000000000:0001", "little") == (
        "2001:db8::1:0:0",
        1,
    )
    with pytest.raises(ParseError):
        decode_inet_address("0100007F1F90")


def test_unix():
    socks = parse_unix(UNIX)
    assert [(s.inode, s.state, s.local, s.sock_type) for s in socks] == [
        (4525, "CONNECTED", None, "stream"),
        (4529, "LISTEN", "/tmp/my sock path", "stream"),
        (4528, "LISTEN", "@abs name", "stream"),
        (123456, "UNCONNECTED", "/run/systemd/notify", "dgram"),
        (4600, "CONNECTING", "@", "seqpacket"),
    ]
    assert all(s.remote is None and s.recv_q is None for s in socks)


def test_unix_path_with_newline_continues():
    text = (
        UNIX.splitlines()[0]
        + "\n00000000bbbbbbbb: 00000002 00000000 00000000 0001 01  77 /tmp/a\nb c\n"
    )
    (sock,) = parse_unix(text)
    assert sock.local == "/tmp/a\nb c"


def test_unix_garbage_raises():
    with pytest.raises(ParseError):
        parse_unix("Num RefCount\nnot a socket line\n")


def test_netlink_and_packet():
    rtnl, genl = parse_netlink(NETLINK)
    assert (rtnl.inode, rtnl.local, rtnl.state) == (4, "rtnl:0", "UNCONN")
    assert (genl.local, genl.recv_q, genl.send_q) == ("genl:4242", 768, 0)
    (pkt,) = parse_packet(PACKET)
    assert (pkt.inode, pkt.proto, pkt.local, pkt.sock_type, pkt.uid) == (
        52345,
        "packet",
        "0x0003:2",
        "raw",
        0,
    )


def _read(name):
    with open(f"/proc/self/net/{name}") as f:
        return f.read()


def test_live_tcp_listen_accept_queue_and_connection():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    clients = [socket.create_connection(srv.getsockname()) for _ in range(3)]
    try:
        by_inode = {s.inode: s for s in parse_inet(_read("tcp"), "tcp")}
        listen = by_inode[os.fstat(srv.fileno()).st_ino]
        assert listen.state == "LISTEN"
        assert listen.local == f"127.0.0.1:{srv.getsockname()[1]}"
        assert listen.recv_q == 3  # three connections wait in the accept queue
        client = by_inode[os.fstat(clients[0].fileno()).st_ino]
        assert client.state == "ESTABLISHED"
        assert client.remote == f"127.0.0.1:{srv.getsockname()[1]}"
        assert client.local == f"127.0.0.1:{clients[0].getsockname()[1]}"
    finally:
        for c in clients:
            c.close()
        srv.close()


def test_live_udp6_and_unix():
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ux = socket.socket(socket.AF_UNIX)
    try:
        u6.bind(("::1", 0))
        ux.bind(f"\0fdscope test {os.getpid()}")
        ux.listen(1)
        (u,) = [
            s for s in parse_inet(_read("udp6"), "udp6") if s.inode == os.fstat(u6.fileno()).st_ino
        ]
        assert (u.state, u.local, u.remote) == ("UNCONN", f"[::1]:{u6.getsockname()[1]}", None)
        (x,) = [s for s in parse_unix(_read("unix")) if s.inode == os.fstat(ux.fileno()).st_ino]
        assert (x.state, x.local) == ("LISTEN", f"@fdscope test {os.getpid()}")
    finally:
        u6.close()
        ux.close()


def test_live_unix_accept_queue_embryo_and_connected_udp():
    name = f"\0fdscope embryo {os.getpid()}"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(name)
    srv.listen(4)
    clients = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for c in clients:
            c.connect(name)
        u1.bind(("127.0.0.1", 0))
        u2.connect(u1.getsockname())
        local = "@" + name[1:]
        rows = [s for s in parse_unix(_read("unix")) if s.local == local]
        # unix_seq_show: the listener, plus one CONNECTING entry (no file, inode 0) per
        # connection waiting to be accept()ed.
        assert sorted((s.state, s.inode == 0) for s in rows) == [
            ("CONNECTING", True),
            ("CONNECTING", True),
            ("LISTEN", False),
        ]
        (u,) = [
            s for s in parse_inet(_read("udp"), "udp") if s.inode == os.fstat(u2.fileno()).st_ino
        ]
        assert (u.state, u.remote) == ("ESTABLISHED", f"127.0.0.1:{u1.getsockname()[1]}")
    finally:
        for c in clients:
            c.close()
        srv.close()
        u1.close()
        u2.close()
