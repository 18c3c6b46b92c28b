"""The only code that touches /proc: a configurable root and one errno translation point.

Everything else asks this layer for text, link targets, directory listings or stat results and
receives fdscope errors (NoSuchProcess, AccessDenied, ProcGone) instead of OSError.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ProcGone
from fdscope.speedups import C

# typing costs ~4 ms to import, and this module is on the way to the inspect read-ahead's
# start (fdscope.readahead): annotations only, never at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/proc"

# What a reader needs for the per-process files that proc(5) guards with
# PTRACE_MODE_READ_FSCREDS (fd/, fdinfo/, syscall, stack, environ): same uid and a
# permissive ptrace scope, or root / CAP_SYS_PTRACE.
PTRACE_READ_NEEDED = (
    "needs ptrace read access to the target (run as its owner or as root / with CAP_SYS_PTRACE; "
    "see /proc/sys/kernel/yama/ptrace_scope)"
)


class Proc:
    """Reads below a proc root (default /proc). `pid` arguments let errors name the process."""

    def __init__(self, root: str | None = None) -> None:
        # FDSCOPE_PROC_ROOT points fdscope at a copied or fake tree (tests, offline snapshots).
        self.root = root or os.environ.get("FDSCOPE_PROC_ROOT") or DEFAULT_ROOT

    def path(self, *parts: object) -> str:
        return os.path.join(self.root, *(str(p) for p in parts))

    @contextmanager
    def _errors(self, path: str, pid: int | None) -> Iterator[None]:
        """Translate OSError from one /proc access into fdscope's errors."""
        try:
            yield
        except (FileNotFoundError, ProcessLookupError) as err:
            # ENOENT for a vanished fd or task; ESRCH when the task died between open and read.
            if pid is not None and not self.alive(pid):
                raise NoSuchProcess(pid) from err
            raise ProcGone(f"{path} vanished") from err
        except PermissionError as err:
            raise AccessDenied(path, PTRACE_READ_NEEDED if pid is not None else None) from err
        except OSError as err:
            if err.errno == errno.ESRCH:
                if pid is not None and not self.alive(pid):
                    raise NoSuchProcess(pid) from err
                raise ProcGone(f"{path} vanished") from err
            raise FdscopeError(f"cannot read {path}: {os.strerror(err.errno or 0)}") from err

    def alive(self, pid: int) -> bool:
        """True while /proc/PID exists (zombies included: callers check state separately)."""
        return os.path.exists(self.path(pid))

    def check_alive(self, pid: int) -> None:
        if not self.alive(pid):
            raise NoSuchProcess(pid)

    def read_text(self, *parts: object, pid: int | None = None) -> str:
        path = self.path(*parts)
        with self._errors(path, pid):
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")

    def read_bytes(self, *parts: object, pid: int | None = None) -> bytes:
        path = self.path(*parts)
        with self._errors(path, pid):
            with open(path, "rb") as f:
                return f.read()

    def readlink(self, *parts: object, pid: int | None = None) -> str:
        path = self.path(*parts)
        with self._errors(path, pid):
            return os.readlink(path)

    def listdir(self, *parts: object, pid: int | None = None) -> list[str]:
        path = self.path(*parts)
        with self._errors(path, pid):
            return os.listdir(path)

    def stat(self, *parts: object, pid: int | None = None, follow: bool = True) -> os.stat_result:
        path = self.path(*parts)
        with self._errors(path, pid):
            return os.stat(path, follow_symlinks=follow)

    def readlinks(
        self, *parts: object, names: Iterable[str], pid: int | None = None
    ) -> tuple[dict[str, str], int]:
        """readlink() of each NAME in directory `parts` (e.g. PID, "fd") in one tight loop.

        Returns (name -> link text, how many vanished). An entry that vanishes meanwhile (an fd
        closed mid-scan) is counted, not raised, for the record-and-check-once race policy; other
        errors translate as in readlink(). (Added by the inspect helper: per-call overhead
        matters at 16,000 fds.)"""
        names = list(names)
        path = self.path(*parts)
        links: dict[str, str] = {}
        vanished = 0
        # readlinkat() on a directory fd skips the path walk through /proc/PID/fd per entry
        # (about 40% of the cost at 16,000 fds); map() keeps the loop in C. zip() pulls a name
        # from `todo` and map() the same name from `again`, so after a failure both iterators
        # stand at the next name and the loop resumes there.
        try:
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            dir_fd = None
        if dir_fd is not None and C is not None:
            return self._c_batch(C.readlinkat_many, self.readlink, dir_fd, parts, names, pid)
        if dir_fd is not None:
            todo, again = iter(names), iter(names)
            readlink_at = partial(os.readlink, dir_fd=dir_fd)
            try:
                while True:
                    try:
                        links.update(zip(todo, map(readlink_at, again), strict=False))
                        break
                    except FileNotFoundError:
                        vanished += 1
                    except OSError:
                        name = names[len(links) + vanished]
                        try:
                            links[name] = self.readlink(*parts, name, pid=pid)
                        except ProcGone:
                            vanished += 1
            finally:
                os.close(dir_fd)
            return links, vanished
        base = path + os.sep
        readlink = os.readlink
        for name in names:
            try:
                links[name] = readlink(base + name)
            except FileNotFoundError:
                vanished += 1
            except OSError:
                try:
                    links[name] = self.readlink(*parts, name, pid=pid)
                except ProcGone:
                    vanished += 1
        return links, vanished

    def read_ahead(self, pid: int, count: int) -> Any:
        """C.readahead (csrc/fdscope_speedups.c) on /proc/PID/fd: the links of fds
        0..count-1 and which of them are epoll fds, in one call that holds no GIL. Its result
        as raw as C gives it ((texts, [(index, errno)]), epfds: fdscope.readahead.stages
        checks the errno numbers), or None without the C module or when the directory cannot
        be opened (the scan then reads for itself and reports why)."""
        if C is None:
            return None
        try:
            dir_fd = os.open(self.path(pid, "fd"), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            return C.readahead(dir_fd, count)
        finally:
            os.close(dir_fd)

    def read_many(
        self, *parts: object, names: Iterable[str], pid: int | None = None
    ) -> tuple[dict[str, str], int]:
        """Text of each small file NAME in directory `parts` (e.g. PID, "fdinfo"), as readlinks()
        does it: open() relative to a directory fd, raw read()s, no Python file objects (a
        third of the cost per file). Returns (name -> text, how many vanished); other errors
        translate as in read_text(). (Added by the inspect helper for fdinfo of many fds.)"""
        path = self.path(*parts)
        try:
            dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            dir_fd = None
        texts: dict[str, str] = {}
        vanished = 0
        if dir_fd is not None and C is not None:
            return self._c_batch(C.read_many, self.read_text, dir_fd, parts, list(names), pid)
        try:
            for name in names:
                if dir_fd is None:
                    data = None
                else:
                    try:
                        data = _read_at(dir_fd, name)
                    except (FileNotFoundError, ProcessLookupError):
                        vanished += 1  # the fd closed, or the task died between open and read
                        continue
                    except OSError:
                        data = None  # let read_text() name the error
                if data is None:
                    try:
                        texts[name] = self.read_text(*parts, name, pid=pid)
                    except ProcGone:
                        vanished += 1
                    continue
                texts[name] = data.decode("utf-8", "surrogateescape")
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return texts, vanished

    def _c_batch(self, batch: Any, one: Any, dir_fd: int, parts: tuple[object, ...],
                 names: list[str], pid: int | None) -> tuple[dict[str, str], int]:
        """A C batch call (readlinkat_many, read_many) on dir_fd, which it closes. A name that
        failed with ENOENT or ESRCH (an fd closed, a task died between open and read) counts as
        vanished; any other failure is retried with `one` (readlink, read_text), which
        translates the errno into fdscope's errors."""
        try:
            texts, errors = batch(dir_fd, names)
        finally:
            os.close(dir_fd)
        out = dict(zip(names, texts, strict=True))
        vanished = 0
        for i, err in errors:
            del out[names[i]]
            if err in (errno.ENOENT, errno.ESRCH):
                vanished += 1
                continue
            try:
                out[names[i]] = one(*parts, names[i], pid=pid)
            except ProcGone:
                vanished += 1
        return out, vanished

    def sysctl(self, name: str) -> str:
        """Text of /proc/sys/NAME, where NAME is 'fs/file-max' or 'fs.file-max'."""
        return self.read_text("sys", name.replace(".", "/"))


def _read_at(dir_fd: int, name: str) -> bytes:
    # To EOF: a short read ends a file only for single_open() seq_files such as fdinfo; the
    # /proc/PID/net tables return whole records per read (fs/seq_file.c seq_read_iter).
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        chunks = []
        while data := os.read(fd, 1 << 16):
            chunks.append(data)
        return b"".join(chunks)
    finally:
        os.close(fd)
