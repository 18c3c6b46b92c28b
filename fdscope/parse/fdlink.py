"""Classify an fd by its /proc/PID/fd/N link text (and, for paths, the target's st_mode)."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass

FD_TYPES = (
    "file",
    "dir",
    "chr",
    "blk",
    "pipe",
    "socket",
    "epoll",
    "eventfd",
    "timerfd",
    "signalfd",
    "inotify",
    "fanotify",
    "pidfd",
    "io_uring",
    "memfd",
    "anon",
    "unknown",
)


@dataclass(frozen=True)
class FdTarget:
    """What an fd refers to: `type` (one of FD_TYPES), the inode the link names, and a name.

    `name` is the path for files (without the " (deleted)" suffix), the memfd name, the anon_inode
    class, or the pseudo-filesystem prefix ("net" for a namespace fd); `deleted` tells whether
    the kernel marked the path deleted."""

    type: str
    inode: int | None
    name: str | None
    deleted: bool = False


# fs/pipe.c and net/socket.c name their dentries "pipe:[INO]" / "socket:[INO]"; nsfs uses
# "net:[INO]", "mnt:[INO]" ... (fs/nsfs.c ns_dname).
_PSEUDO = re.compile(r"([a-z_]+):\[([0-9]+)\]", re.ASCII)
# fs/anon_inodes.c: "anon_inode:" + the class name given by the creator, mostly in brackets
# ("[eventpoll]", "[eventfd]"), sometimes not ("inotify", "bpf-map", "sync_file").
_ANON = re.compile(r"anon_inode:(.*)", re.DOTALL)
_ANON_TYPES = {
    "[eventpoll]": "epoll",
    "[eventfd]": "eventfd",
    "[timerfd]": "timerfd",
    "[signalfd]": "signalfd",
    "inotify": "inotify",
    "[fanotify]": "fanotify",
    # kernel/pid.c and (since 6.9) fs/pidfs.c pidfs_dname both name pidfds "anon_inode:[pidfd]".
    "[pidfd]": "pidfd",
    "[io_uring]": "io_uring",
}
# The same as whole link texts, for callers that classify thousands of links at once.
ANON_LINKS = {f"anon_inode:{cls}": typ for cls, typ in _ANON_TYPES.items()}
_DELETED = " (deleted)"
# mm/memfd.c: memfd files are named "memfd:" + the user's name; d_path shows "/memfd:NAME (deleted)".
_MEMFD_PREFIX = "/memfd:"


def classify_fd(link: str, st_mode: int | None = None) -> FdTarget:
    """Classify the text of readlink(/proc/PID/fd/N).

    For paths, `st_mode` (from stat() of the link, i.e. of the target) distinguishes directories,
    devices and named FIFOs; without it a path is a plain `file`."""
    match = _PSEUDO.fullmatch(link)
    if match:
        kind, inode = match.group(1), int(match.group(2))
        if kind == "socket":
            return FdTarget("socket", inode, None)
        if kind == "pipe":
            return FdTarget("pipe", inode, None)
        return FdTarget("anon", inode, kind)
    match = _ANON.fullmatch(link)
    if match:
        cls = match.group(1)
        return FdTarget(_ANON_TYPES.get(cls, "anon"), None, cls)
    if link.startswith("/"):
        deleted = link.endswith(_DELETED)
        path = link[: -len(_DELETED)] if deleted else link
        if deleted and path.startswith(_MEMFD_PREFIX):
            return FdTarget("memfd", None, path[len(_MEMFD_PREFIX) :], deleted)
        return FdTarget(_type_from_mode(st_mode), None, path, deleted)
    return FdTarget("unknown", None, link or None)


def _type_from_mode(st_mode: int | None) -> str:
    if st_mode is None:
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISCHR(st_mode):
        return "chr"
    if stat.S_ISBLK(st_mode):
        return "blk"
    if stat.S_ISFIFO(st_mode):
        return "pipe"
    return "file"
