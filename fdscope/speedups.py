"""The one seam between fdscope and its optional C accelerator (csrc/fdscope_speedups.c).

`backend` is chosen once, at import: `CBackend` when the module `_fdscope_speedups` is built with
the API number below, else `Backend`, the pure-Python reference. Callers use `speedups.backend`
and never ask which one they got. Every C function has a Python twin of the same contract:

  readlinkat_many(dir_fd, names) -> (texts, [(index, errno)])   Backend below
  read_many(dir_fd, names)       -> (texts, [(index, errno)])   Backend below
  kcmp_many(pid, items)          -> [kcmp result or -errno]     Backend below (ctypes)
  epoll_rows(text)  -> [(tfd, mask, data, ino, st_dev)] | None  fdscope.parse.fdinfo.epoll_rows
  net_rows(table, text, inodes)
      -> [(inode, proto, state, local, remote, recv_q, send_q)] | None
                                                                fdscope.parse.net.socket_rows
  link_kinds(texts) -> (kinds, inodes)        fdscope.parse.fdkinds.link_kinds
  rows_json(rows, keys, sep) -> str | None    fdscope.render.inspect's row writers

The batch reads run without the GIL (a second CPU for fdscope's read-ahead); the parsers answer
None for text not in the exact form they know, and the Python twin then decides, so the C side
may decline but never disagree (tests/test_speedups.py checks both on live and hypothesis input).
rows_json is the one without a Python method: the Python backend declines (None) and the
renderer writes the rows with its own row writers, which are its twins.
FDSCOPE_NO_SPEEDUPS=1 forces the Python code; CI sets FDSCOPE_REQUIRE_SPEEDUPS=1 so that tests
fail rather than skip when the module is missing.
"""

from __future__ import annotations

import os

# Annotations only: this module is on the way to the inspect read-ahead's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

# The C module's FDSCOPE_SPEEDUPS_API this code is written against; a build from other sources
# (a development venv not reinstalled after a C change) is left unused rather than miscalled.
API = 11


class Backend:
    """The pure-Python implementations: the reference every C function is compared with."""

    name = "python"

    @staticmethod
    def readlinkat_many(dir_fd: int, names: list[str]) -> tuple[list[str | None],
                                                                 list[tuple[int, int]]]:
        """readlink(NAME, dir_fd) for each name: (texts, [(index, errno)]), None where it
        failed (decoded as os.readlink decodes)."""
        texts: list[str | None] = []
        errors: list[tuple[int, int]] = []
        for i, name in enumerate(names):
            try:
                texts.append(os.readlink(name, dir_fd=dir_fd))
            except OSError as err:
                texts.append(None)
                errors.append((i, err.errno or 0))
        return texts, errors

    @staticmethod
    def read_many(dir_fd: int, names: list[str]) -> tuple[list[str | None],
                                                           list[tuple[int, int]]]:
        """The whole text of each file NAME below dir_fd (UTF-8, surrogateescape, as
        fdscope.proc.Proc.read_text decodes): (texts, [(index, errno)])."""
        texts: list[str | None] = []
        errors: list[tuple[int, int]] = []
        for i, name in enumerate(names):
            try:
                texts.append(_read_at(dir_fd, name).decode("utf-8", "surrogateescape"))
            except OSError as err:
                texts.append(None)
                errors.append((i, err.errno or 0))
        return texts, errors

    @staticmethod
    def kcmp_many(pid: int, items: list[tuple[int, ...]]) -> list[int]:
        """kcmp(2) for each item of pid's fds: (fd1, fd2) compares two open files (KCMP_FILE);
        (fd, epfd, tfd, toff) compares fd's file with the toff-th registration of tfd in epoll
        fd epfd (KCMP_EPOLL_TFD). Each result: 0 equal, 1 or 2 ordered, 3 not equal, -errno."""
        kcmp = _kcmp()
        return [kcmp(pid, 7, item[0], item[1:]) if len(item) == 4 else
                kcmp(pid, 0, item[0], item[1]) for item in items]

    @staticmethod
    def epoll_rows(text: str) -> list[tuple[int, int, int, int, int]] | None:
        from fdscope.parse.fdinfo import epoll_rows

        return epoll_rows(text)

    @staticmethod
    def net_rows(table: str, text: str, inodes: set[int] | None) -> list[tuple[Any, ...]]:
        from fdscope.parse.net import socket_rows

        return socket_rows(table, text, inodes)

    @staticmethod
    def link_kinds(texts: list[str | None]) -> tuple[bytes, list[int]]:
        from fdscope.parse.fdkinds import link_kinds

        return link_kinds(texts)

    @staticmethod
    def rows_json(rows: list[Any], keys: tuple[Any, ...], sep: str) -> str | None:
        return None  # the renderer's own row writers


class CBackend(Backend):
    """The C functions; where a C parser declines (None), its Python twin answers."""

    name = "c"

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.readlinkat_many = module.readlinkat_many  # type: ignore[method-assign]
        self.read_many = module.read_many  # type: ignore[method-assign]
        self.kcmp_many = module.kcmp_many  # type: ignore[method-assign]
        self.link_kinds = module.link_kinds  # type: ignore[method-assign]

    def epoll_rows(self, text: str) -> list[tuple[int, int, int, int, int]] | None:
        rows = self.module.epoll_rows(text)
        return rows if rows is not None else Backend.epoll_rows(text)

    def net_rows(self, table: str, text: str, inodes: set[int] | None) -> list[tuple[Any, ...]]:
        rows = self.module.net_rows(table, text, inodes)
        return rows if rows is not None else Backend.net_rows(table, text, inodes)

    def rows_json(self, rows: list[Any], keys: tuple[Any, ...], sep: str) -> str | None:
        return self.module.rows_json(rows, keys, sep)  # type: ignore[no-any-return]


# kcmp(2)'s number: arch/x86/entry/syscalls/syscall_64.tbl 312, include/uapi/asm-generic/
# unistd.h 272 (arm64, riscv, loongarch). Elsewhere ENOSYS: inspect then falls back to stat().
_SYS_KCMP = {"x86_64": 312, "aarch64": 272, "riscv64": 272, "loongarch64": 272}.get(
    os.uname().machine, -1)


_ctypes_kcmp: Any = None


def _kcmp() -> Any:
    """kcmp(2) through libc's syscall() with ctypes, set up on first use: a function
    (pid, type, idx1, idx2 | (efd, tfd, toff)) -> result or -errno."""
    global _ctypes_kcmp
    if _ctypes_kcmp is not None:
        return _ctypes_kcmp
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong,
                        ctypes.c_ulong]

    class Slot(ctypes.Structure):  # include/uapi/linux/kcmp.h struct kcmp_epoll_slot
        _fields_ = [("efd", ctypes.c_uint32), ("tfd", ctypes.c_uint32),
                    ("toff", ctypes.c_uint32)]

    def kcmp(pid: int, kind: int, idx1: int, idx2: Any) -> int:
        if _SYS_KCMP < 0:
            return -38  # ENOSYS
        if isinstance(idx2, tuple):
            slot = Slot(*idx2)
            idx2 = ctypes.addressof(slot)
        r = syscall(_SYS_KCMP, pid, pid, kind, idx1, idx2)
        return r if r >= 0 else -ctypes.get_errno()

    _ctypes_kcmp = kcmp
    return kcmp


def _read_at(dir_fd: int, name: str) -> bytes:
    # To EOF: a short read ends a file only for single_open() seq_files such as fdinfo; the
    # /proc/PID/net tables return whole records per read (fs/seq_file.c seq_read_iter).
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        while data := os.read(fd, 1 << 16):
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_c() -> ModuleType | None:
    """The built C module when its API matches (None without it or with FDSCOPE_NO_SPEEDUPS)."""
    if os.environ.get("FDSCOPE_NO_SPEEDUPS"):
        return None
    try:
        import _fdscope_speedups
    except ImportError:
        return None
    return _fdscope_speedups if getattr(_fdscope_speedups, "API", None) == API else None


def _choose() -> Backend:
    module = load_c()
    return CBackend(module) if module is not None else Backend()


backend: Backend = _choose()
