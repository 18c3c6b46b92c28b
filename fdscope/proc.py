"""The only code that touches /proc: a configurable root and one errno translation point.

Everything else asks this layer for text, link targets, directory listings or stat results and
receives fdscope errors (NoSuchProcess, AccessDenied, ProcGone) instead of OSError.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from fdscope import speedups
from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, ProcGone

# typing costs ~4 ms to import, and this module is on the way to the inspect read-ahead's
# start (fdscope.readahead): annotations only, never at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/proc"
# errno of an fd or task that went away between a listing and the read (counted, not raised)
VANISHED = frozenset({errno.ENOENT, errno.ESRCH})

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
        """readlink() of each NAME in directory `parts` (e.g. PID, "fd"), in one batch.

        Returns (name -> link text, how many vanished). An entry that vanishes meanwhile (an fd
        closed mid-scan) is counted, not raised, for the record-and-check-once race policy; other
        errors translate as in readlink()."""
        return self._batch(speedups.backend.readlinkat_many, self.readlink, parts, names, pid)

    def read_many(
        self, *parts: object, names: Iterable[str], pid: int | None = None
    ) -> tuple[dict[str, str], int]:
        """The text of each small file NAME in directory `parts` (e.g. PID, "fdinfo"), in one
        batch; names may reach into subdirectories ("net/tcp"). Returns (name -> text, how many
        vanished); other errors translate as in read_text()."""
        return self._batch(speedups.backend.read_many, self.read_text, parts, names, pid)

    def _batch(self, batch: Any, one: Any, parts: tuple[object, ...], names: Iterable[str],
               pid: int | None) -> tuple[dict[str, str], int]:
        """`batch` (readlinkat_many, read_many: relative to a directory fd, the GIL released in
        the C versions) over `names`. A name that failed with ENOENT or ESRCH (an fd closed, a
        task died between open and read) counts as vanished; any other failure is retried with
        `one` (readlink, read_text), which translates the errno into fdscope's errors."""
        names = list(names)
        path = self.path(*parts)
        try:
            with self._errors(path, pid):
                dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except ProcGone:
            return {}, len(names)
        try:
            texts, errors = batch(dir_fd, names)
        finally:
            os.close(dir_fd)
        out = dict(zip(names, texts, strict=True))
        vanished = 0
        for i, err in errors:
            del out[names[i]]
            if err in VANISHED:
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
