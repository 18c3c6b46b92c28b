"""epoll mask and open-flag names (values from include/uapi/linux/eventpoll.h and fcntl.h)."""

import os
import select

import pytest

from fdscope.parse.events import (
    EPOLL_BITS,
    EPOLL_PRIVATE_BITS,
    decode_epoll_mask,
    decode_open_flags,
    event_bits,
    is_disarmed,
)


def test_epoll_bits_match_python_select_module():
    for value, name in EPOLL_BITS.items():
        if hasattr(select, name):
            assert getattr(select, name) & 0xFFFFFFFF == value, name


def test_decode_mask_from_real_fdinfo_lines():
    assert decode_epoll_mask(0x80000019) == ("EPOLLIN", "EPOLLERR", "EPOLLHUP", "EPOLLET")
    assert decode_epoll_mask(0x40000019) == ("EPOLLIN", "EPOLLERR", "EPOLLHUP", "EPOLLONESHOT")
    assert decode_epoll_mask(0x2005) == ("EPOLLIN", "EPOLLOUT", "EPOLLRDHUP")
    assert decode_epoll_mask(0x10000001) == ("EPOLLIN", "EPOLLEXCLUSIVE")
    assert decode_epoll_mask(0) == ()


def test_unknown_bits_are_hex_strings():
    assert decode_epoll_mask(0x1 | 0x800 | 0x4000) == ("EPOLLIN", "0x800", "0x4000")


def test_private_bits_and_disarmed():
    assert EPOLL_PRIVATE_BITS == (1 << 28) | (1 << 29) | (1 << 30) | (1 << 31)
    # After a ONESHOT report the kernel keeps only EP_PRIVATE_BITS (fdinfo shows 40000000).
    assert is_disarmed(0x40000000)
    assert is_disarmed(0xC0000000)
    assert not is_disarmed(0x40000019)
    assert not is_disarmed(0x80000000)  # ET without ONESHOT is not "disarmed"
    assert not is_disarmed(0)
    assert event_bits(0xC0002019) == 0x2019


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (0o100000, ("O_RDONLY", "O_LARGEFILE")),
        (0o2000002, ("O_RDWR", "O_CLOEXEC")),
        (0o2104000, ("O_RDONLY", "O_NONBLOCK", "O_CLOEXEC", "O_LARGEFILE")),
        (0o2300000, ("O_RDONLY", "O_CLOEXEC", "O_LARGEFILE", "O_DIRECTORY")),
        (0o02001, ("O_WRONLY", "O_APPEND")),
        (0o20002, ("O_RDWR", "O_ASYNC")),
        (0o4010001, ("O_WRONLY", "O_SYNC")),
        (0o10001, ("O_WRONLY", "O_DSYNC")),
        (0o12000000, ("O_PATH", "O_CLOEXEC")),
        (0o20200002, ("O_RDWR", "O_TMPFILE")),
        (0o40000, ("O_RDONLY", "O_DIRECT")),
        (3, ("O_ACCMODE",)),
    ],
)
def test_open_flags_x86_64(flags, expected):
    assert decode_open_flags(flags, "x86_64") == expected


def test_open_flags_aarch64_layout_differs():
    # arch/arm64/include/uapi/asm/fcntl.h: O_DIRECTORY 040000, O_LARGEFILE 0400000.
    assert decode_open_flags(0o40000, "aarch64") == ("O_RDONLY", "O_DIRECTORY")
    assert decode_open_flags(0o400000, "arm64") == ("O_RDONLY", "O_LARGEFILE")
    assert decode_open_flags(0o40000, "amd64") == ("O_RDONLY", "O_DIRECT")


def test_unknown_open_bits_are_kept():
    assert decode_open_flags(0o2 | (1 << 30), "x86_64") == ("O_RDWR", "0x40000000")


def test_open_flags_match_os_module_on_this_machine():
    for name in ("O_NONBLOCK", "O_CLOEXEC", "O_APPEND", "O_ASYNC", "O_DIRECT", "O_NOATIME"):
        assert name in decode_open_flags(getattr(os, name)), name
    assert decode_open_flags(os.O_SYNC | os.O_WRONLY)[:2] == ("O_WRONLY", "O_SYNC")
