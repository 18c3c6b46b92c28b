"""fdinfo parsing on text captured from Linux 6.18 and from the 3.8-4.x epoll format."""

import os
import select
import socket

import pytest

from fdscope.errors import ParseError
from fdscope.parse.events import decode_open_flags
from fdscope.parse.fdinfo import (
    EpollTarget,
    _parse_epoll_tokens,
    kernel_dev_to_userspace,
    parse_epoll_line,
    parse_fdinfo,
)

EPOLL_6_18 = (
    "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t12\n"
    "tfd:        5 events: 40000019 data:                5  pos:0 ino:11ad sdev:9\n"
    "tfd:        4 events: 80000019 data:                4  pos:0 ino:11ac sdev:9\n"
)
EPOLL_3_8 = (
    "pos:\t0\nflags:\t02\n"
    "tfd:        7 events:       19 data: 00007f3a5c0012a0\n"
    "tfd:       12 events: 80002019 data: ffffffffffffffff\n"
)


def test_common_fields():
    info = parse_fdinfo("pos:\t10\nflags:\t02104000\nmnt_id:\t27\nino:\t739\n")
    assert (info.pos, info.flags, info.mnt_id, info.ino) == (10, 0o2104000, 27, 739)
    assert info.epoll == () and info.fields == () and info.unknown == ()


def test_epoll_current_format():
    info = parse_fdinfo(EPOLL_6_18)
    assert info.epoll == (
        EpollTarget(tfd=5, events=0x40000019, data=5, pos=0, ino=0x11AD, sdev=9),
        EpollTarget(tfd=4, events=0x80000019, data=4, pos=0, ino=0x11AC, sdev=9),
    )
    assert info.ino == 12 and info.mnt_id == 17


def test_epoll_old_format_and_pointer_data():
    info = parse_fdinfo(EPOLL_3_8)
    first, second = info.epoll
    assert (first.tfd, first.events, first.data) == (7, 0x19, 0x7F3A5C0012A0)
    assert (first.pos, first.ino, first.sdev) == (None, None, None)
    assert second.data == 2**64 - 1
    assert info.mnt_id is None


def test_epoll_any_hex_width_and_future_tokens():
    info = parse_fdinfo(
        "flags:\t02\ntfd: 3 events: 1 data: 0 pos:-1 ino:ABCDEF0123 sdev:800001 new:7\n"
    )
    (t,) = info.epoll
    assert (t.pos, t.ino, t.sdev, t.extra) == (-1, 0xABCDEF0123, 0x800001, (("new", "7"),))


def test_other_types_keep_fields_and_raw_lines():
    text = (
        "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t12\n"
        "inotify wd:1 ino:3f7e8 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8\n"
        "fanotify flags:0 event-flags:8000\n"
        "eventfd-count:                3\neventfd-id: 1\n"
        "settime flags: 00\nit_value: (0, 0)\nPollList:\n"
        "lock:\t1: FLOCK  ADVISORY  WRITE 1234 00:1a:123 0 EOF\n"
        "  user_data=1, res=0\n"
    )
    info = parse_fdinfo(text)
    assert info.unknown == (
        "inotify wd:1 ino:3f7e8 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:8",
        "fanotify flags:0 event-flags:8000",
        "  user_data=1, res=0",
    )
    assert info.field("eventfd-count") == "3"
    assert info.field("settime flags") == "00"
    assert info.field("it_value") == "(0, 0)"
    assert info.field("PollList") == ""
    assert info.field("lock") == "1: FLOCK  ADVISORY  WRITE 1234 00:1a:123 0 EOF"
    assert info.field("missing") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pos:\t0\n",
        "pos:\tzz\nflags:\t02\n",
        "flags:\t09\n",
        "flags:\t02\ntfd: 1 events: xyz data: 0\n",
        "flags:\t02\ntfd: 1 data: 0\n",
        "flags:\t\u0662\n",
    ],
)
def test_malformed_known_lines_raise_parse_error(text):
    with pytest.raises(ParseError):
        parse_fdinfo(text)


def test_kernel_dev_to_userspace():
    assert kernel_dev_to_userspace(0xFE00000) == os.makedev(254, 0)
    assert kernel_dev_to_userspace(9) == os.makedev(0, 9)
    assert kernel_dev_to_userspace((259 << 20) | 70000) == os.makedev(259, 70000)


def test_live_epoll_fdinfo_matches_fstat():
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN | select.EPOLLET)
        ep.register(b.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
        with open(f"/proc/self/fdinfo/{ep.fileno()}") as f:
            info = parse_fdinfo(f.read())
        by_fd = {t.tfd: t for t in info.epoll}
        assert set(by_fd) == {a.fileno(), b.fileno()}
        for sock in (a, b):
            st = os.fstat(sock.fileno())
            target = by_fd[sock.fileno()]
            assert target.ino == st.st_ino
            assert kernel_dev_to_userspace(target.sdev) == st.st_dev
        assert by_fd[a.fileno()].events & select.EPOLLET
        assert info.flags & os.O_CLOEXEC
    finally:
        ep.close()
        a.close()
        b.close()


def test_live_flags_and_pos_decode(tmp_path):
    path = tmp_path / "log"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    ro = os.open(path, os.O_RDONLY)
    try:
        os.read(ro, 7)
        os.set_inheritable(fd, True)  # clear O_CLOEXEC, which Python sets by default
        with open(f"/proc/self/fdinfo/{fd}") as f:
            info = parse_fdinfo(f.read())
        names = decode_open_flags(info.flags)
        assert names[0] == "O_WRONLY"
        assert {"O_APPEND", "O_NONBLOCK"} <= set(names) and "O_CLOEXEC" not in names
        assert info.ino == os.fstat(fd).st_ino
        with open(f"/proc/self/fdinfo/{ro}") as f:
            info = parse_fdinfo(f.read())
        assert info.pos == 7 and decode_open_flags(info.flags)[:2] == ("O_RDONLY", "O_CLOEXEC")
    finally:
        os.close(fd)
        os.close(ro)


@pytest.mark.parametrize(
    "line",
    [
        "tfd:        5 events: 40000019 data:                5  pos:0 ino:11ad sdev:9",
        "tfd:        7 events:       19 data: 00007f3a5c0012a0",
        "tfd: 7 events: 19 data: 7F3A5C0012A0  pos:-3 ino:FFFFFFFFFFFFFFFFFF sdev:FE00000",
    ],
)
def test_fast_path_agrees_with_token_parser(line):
    assert parse_epoll_line(line) == _parse_epoll_tokens(line)
