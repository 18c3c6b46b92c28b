"""fd link classification on link texts seen on Linux 6.18, plus a live zoo."""

import os
import socket
import stat

import pytest

from fdscope.parse.fdlink import FD_TYPES, FdTarget, classify_fd

REG = stat.S_IFREG | 0o644


@pytest.mark.parametrize(
    ("link", "mode", "expected"),
    [
        ("socket:[4524]", None, FdTarget("socket", 4524, None)),
        ("pipe:[4526]", None, FdTarget("pipe", 4526, None)),
        ("anon_inode:[eventpoll]", None, FdTarget("epoll", None, "[eventpoll]")),
        ("anon_inode:[eventfd]", None, FdTarget("eventfd", None, "[eventfd]")),
        ("anon_inode:[timerfd]", None, FdTarget("timerfd", None, "[timerfd]")),
        ("anon_inode:[signalfd]", None, FdTarget("signalfd", None, "[signalfd]")),
        ("anon_inode:inotify", None, FdTarget("inotify", None, "inotify")),
        ("anon_inode:[fanotify]", None, FdTarget("fanotify", None, "[fanotify]")),
        ("anon_inode:[pidfd]", None, FdTarget("pidfd", None, "[pidfd]")),
        ("anon_inode:[io_uring]", None, FdTarget("io_uring", None, "[io_uring]")),
        ("anon_inode:bpf-map", None, FdTarget("anon", None, "bpf-map")),
        ("anon_inode:[userfaultfd]", None, FdTarget("anon", None, "[userfaultfd]")),
        ("net:[4026531840]", None, FdTarget("anon", 4026531840, "net")),
        ("/memfd:my mem fd (deleted)", REG, FdTarget("memfd", None, "my mem fd", True)),
        ("/memfd:x", REG, FdTarget("file", None, "/memfd:x")),
        ("/var/log/a b.log (deleted)", REG, FdTarget("file", None, "/var/log/a b.log", True)),
        ("/tmp", stat.S_IFDIR | 0o755, FdTarget("dir", None, "/tmp")),
        ("/dev/null", stat.S_IFCHR | 0o666, FdTarget("chr", None, "/dev/null")),
        ("/dev/vda", stat.S_IFBLK | 0o660, FdTarget("blk", None, "/dev/vda")),
        ("/run/fifo", stat.S_IFIFO | 0o600, FdTarget("pipe", None, "/run/fifo")),
        ("/etc/passwd", None, FdTarget("file", None, "/etc/passwd")),
        ("", None, FdTarget("unknown", None, None)),
        ("weird", None, FdTarget("unknown", None, "weird")),
    ],
)
def test_classify(link, mode, expected):
    assert classify_fd(link, mode) == expected


def test_live_zoo():
    fds = {}
    r, w = os.pipe()
    a, b = socket.socketpair()
    fds["pipe"] = r
    fds["socket"] = a.fileno()
    fds["eventfd"] = os.eventfd(0)
    fds["memfd"] = os.memfd_create("fdscope test")
    fds["pidfd"] = os.pidfd_open(os.getpid())
    fds["dir"] = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fds["chr"] = os.open("/dev/null", os.O_RDONLY)
    try:
        for kind, fd in fds.items():
            path = f"/proc/self/fd/{fd}"
            target = classify_fd(os.readlink(path), os.stat(path).st_mode)
            assert target.type == kind, (kind, os.readlink(path))
            assert target.type in FD_TYPES
        assert classify_fd(os.readlink(f"/proc/self/fd/{r}")).inode == os.fstat(r).st_ino
        assert (
            classify_fd(os.readlink(f"/proc/self/fd/{a.fileno()}")).inode
            == os.fstat(a.fileno()).st_ino
        )
        assert classify_fd(os.readlink(f"/proc/self/fd/{fds['memfd']}")).name == "fdscope test"
    finally:
        for kind, fd in fds.items():
            if kind != "socket":
                os.close(fd)
        os.close(w)
        a.close()
        b.close()
