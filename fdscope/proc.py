"""The only code that touches /proc: a configurable root and one errno translation point.

Everything else asks this layer for text, link targets, directory listings or stat results and
receives fdscope errors (NoSuchProcess, AccessDenied, ProcGone) instead of OSError.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from fdscope import speedups
from fdscope.errors import AccessDenied, FdscopeError, NoSuchProcess, OutOfFds, ProcGone

# Imported here, not on first use: the error paths use it (hidepid in a message), and the
# read-ahead threads (fdscope.inspect.readahead, fdscope.host.readahead) reach them while the
# main thread imports click. A reader thread importing it then made about one `top` in 40
# fail here (CPython 3.11.7: NameError: name 'sys' inside importlib's _find_and_load).
from fdscope.parse.mountinfo import mount_at, parse_mountinfo

# typing costs ~4 ms to import, and this module is on the way to the inspect read-ahead's
# start (fdscope.inspect.readahead): annotations only, never at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/proc"
# errno of an fd or task that went away between a listing and the read (counted, not raised)
VANISHED = frozenset({errno.ENOENT, errno.ESRCH})

# What a reader needs for the per-process files that proc(5) guards with
# PTRACE_MODE_READ_FSCREDS (fd/, fdinfo/, syscall, stack, environ): the target's uid, or
# CAP_SYS_PTRACE (kernel/ptrace.c __ptrace_may_access). access_needed() says which part is
# missing; this is what it says when it cannot tell.
PTRACE_READ_NEEDED = (
    "needs ptrace read access to the target (run as its owner or as root with CAP_SYS_PTRACE)"
)
CAP_SYS_PTRACE = 19  # include/uapi/linux/capability.h
CAP_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)


def cap_names(mask: int) -> list[str]:
    """CAP_* names of the bits set in `mask` (CAP_<bit> for bits newer than this table)."""
    return [f"CAP_{CAP_NAMES[b]}" if b < len(CAP_NAMES) else f"CAP_{b}"
            for b in range(mask.bit_length()) if mask >> b & 1]


class Proc:
    """Reads below a proc root (default /proc). `pid` arguments let errors name the process."""

    def __init__(self, root: str | None = None) -> None:
        # FDSCOPE_PROC_ROOT points fdscope at a copied or fake tree (tests, offline snapshots).
        self.root = root or os.environ.get("FDSCOPE_PROC_ROOT") or DEFAULT_ROOT
        self._mount: Any = False  # not looked up yet

    def path(self, *parts: object) -> str:
        return "/".join([self.root, *map(str, parts)])

    def _error(self, err: OSError, path: str, pid: int | None) -> FdscopeError:
        """The fdscope error for OSError `err` from one /proc access (raised `from err`)."""
        if isinstance(err, (FileNotFoundError, ProcessLookupError)) or err.errno == errno.ESRCH:
            # ENOENT for a vanished fd or task; ESRCH when the task died between open and read.
            if pid is not None and not self.alive(pid):
                return self.no_such_process(pid)
            return ProcGone(f"{path} vanished")
        if isinstance(err, PermissionError):
            return AccessDenied(path, self.access_needed(pid) if pid is not None else None)
        if err.errno in (errno.EMFILE, errno.ENFILE):
            return OutOfFds(err.errno, f"opening {path}")
        return FdscopeError(f"cannot read {path}: {os.strerror(err.errno or 0)}")

    def alive(self, pid: int) -> bool:
        """True while /proc/PID exists (zombies included: callers check state separately)."""
        return os.path.exists(self.path(pid))

    def check_alive(self, pid: int) -> None:
        if not self.alive(pid):
            raise self.no_such_process(pid)

    # -- what the proc mount and fdscope's own credentials explain ---------------------------
    def mount(self) -> Any:
        """The procfs mount at the root (fdscope.parse.mountinfo.Mount: hidepid, gid, subset),
        from fdscope's own mountinfo; None for a tree that is not a procfs mount point (a
        copy) or when mountinfo cannot be read."""
        if self._mount is False:
            try:
                with open(self.path("self", "mountinfo"), "rb") as f:
                    text = f.read().decode("utf-8", "surrogateescape")
                self._mount = mount_at(parse_mountinfo(text), os.path.realpath(self.root), "proc")
            except OSError:
                self._mount = None
        return self._mount

    def _hidepid(self) -> str | None:
        mount = self.mount()
        hidepid = mount.hidepid if mount is not None else None
        return None if hidepid in (None, "off") else hidepid

    def no_such_process(self, pid: int) -> NoSuchProcess:
        """NoSuchProcess for a pid with no /proc entry; under hidepid=invisible (2) or
        ptraceable (4) the entry of a process fdscope may not read is hidden, not absent
        (Documentation/filesystems/proc.rst), and the message says so."""
        hidepid = self._hidepid()
        if hidepid in ("invisible", "ptraceable"):
            return NoSuchProcess(pid, f"no process with pid {pid} (it may be hidden: "
                                      f"{self.root} is mounted with hidepid={hidepid})")
        return NoSuchProcess(pid)

    def _status(self, who: object) -> dict[str, str] | None:
        """The "Key: value" lines of WHO/status (WHO: a pid or "self"), or None."""
        try:
            with open(self.path(who, "status"), "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError:
            return None
        lines = (line.partition(":") for line in text.split("\n"))
        return {k: v.strip() for k, sep, v in lines if sep}

    def access_needed(self, pid: int) -> str:
        """Why /proc/PID refused a read, as far as fdscope can tell, and what would allow it:
        hidepid on the proc mount, or the part of ptrace read access (kernel/ptrace.c
        __ptrace_may_access, security/commoncap.c cap_ptrace_access_check) that is missing:
        the target's uid, CAP_SYS_PTRACE, or capabilities the target holds and fdscope lacks."""
        hidepid = self._hidepid()
        if hidepid is not None:
            mount = self.mount()
            gid = mount.option("gid") if mount is not None else None
            also = f", members of group {gid}" if gid else ""
            return (f"{self.root} is mounted with hidepid={hidepid}: /proc/{pid} is readable "
                    f"only by the process's owner{also} and root with CAP_SYS_PTRACE")
        own, target = self._status("self"), self._status(pid)
        try:
            euid = int(own["Uid"].split()[1]) if own else os.geteuid()
            caps = int(own["CapEff"], 16) if own else None
            bounding = int(own["CapBnd"], 16) if own else None
            tuid = int(target["Uid"].split()[1]) if target else None
            tcaps = int(target["CapPrm"], 16) if target else None
        except (KeyError, IndexError, ValueError):
            return PTRACE_READ_NEEDED
        who = "root" if euid == 0 else f"uid {euid}"
        missing = cap_names(tcaps & ~caps) if tcaps is not None and caps is not None else []
        has_ptrace = caps is None or bool(caps >> CAP_SYS_PTRACE & 1)
        if not has_ptrace:
            where = ""
            if bounding is not None and not bounding >> CAP_SYS_PTRACE & 1:
                where = ", nor in its bounding set (a container or capsh --drop removed it)"
            if tuid is not None and tuid != euid:
                return (f"needs ptrace read access to the target: run as its owner (uid {tuid}) "
                        f"or with CAP_SYS_PTRACE; fdscope runs as {who}, and CAP_SYS_PTRACE is "
                        f"not in its effective set{where}")
            why = (f"holds capabilities fdscope lacks ({', '.join(missing)})" if missing else
                   "is not dumpable (a setuid or setcap program, or prctl PR_SET_DUMPABLE 0)")
            return (f"needs ptrace read access to the target: fdscope runs as {who}, its owner, "
                    f"but the target {why}, and reading it then takes CAP_SYS_PTRACE, which is "
                    f"not in fdscope's effective set{where}")
        if missing:
            outside = cap_names(tcaps & ~bounding) if tcaps is not None and bounding is not None \
                else []
            beyond = ""
            if outside:
                beyond = (", outside fdscope's bounding set" if outside == missing else
                          f" ({', '.join(outside)} outside fdscope's bounding set)")
                beyond += ": a container or capsh --drop limits what even root may hold"
            return (f"ptrace read access refused although fdscope runs as {who} with "
                    f"CAP_SYS_PTRACE: the target holds capabilities fdscope lacks "
                    f"({', '.join(missing)}){beyond}; a security module (SELinux, AppArmor, "
                    "Landlock) may refuse it too")
        return (f"{PTRACE_READ_NEEDED}; fdscope runs as {who}: the target may be not dumpable "
                "(a setuid or setcap program, prctl PR_SET_DUMPABLE 0), or a security module "
                "(SELinux, AppArmor, Landlock) refuses")

    def thread_group_leader(self, pid: int) -> int:
        """The process a pid belongs to: itself for a process, the thread group leader for a
        thread id (a TID has a /proc/TID entry too, though not listed; its status Tgid names
        the process)."""
        from fdscope.parse.status import parse_status

        return parse_status(self.read_text(pid, "status", pid=pid)).tgid

    def read_text(self, *parts: object, pid: int | None = None) -> str:
        path = self.path(*parts)
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "surrogateescape")
        except OSError as err:
            raise self._error(err, path, pid) from err

    def read_bytes(self, *parts: object, pid: int | None = None) -> bytes:
        path = self.path(*parts)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as err:
            raise self._error(err, path, pid) from err

    def readlink(self, *parts: object, pid: int | None = None) -> str:
        path = self.path(*parts)
        try:
            return os.readlink(path)
        except OSError as err:
            raise self._error(err, path, pid) from err

    def listdir(self, *parts: object, pid: int | None = None) -> list[str]:
        path = self.path(*parts)
        try:
            return os.listdir(path)
        except OSError as err:
            raise self._error(err, path, pid) from err

    def stat(self, *parts: object, pid: int | None = None, follow: bool = True) -> os.stat_result:
        path = self.path(*parts)
        try:
            return os.stat(path, follow_symlinks=follow)
        except OSError as err:
            raise self._error(err, path, pid) from err

    def getxattr(self, *parts: object, name: str, pid: int | None = None) -> bytes:
        """The extended attribute `name` of the file at `parts` (following links)."""
        path = self.path(*parts)
        try:
            return os.getxattr(path, name)
        except OSError as err:
            raise self._error(err, path, pid) from err

    def readlinks(
        self, *parts: object, names: Iterable[str], pid: int | None = None
    ) -> tuple[dict[str, str], int]:
        """readlink() of each NAME in directory `parts` (e.g. PID, "fd"), in one batch.

        Returns (name -> link text, how many vanished). An entry that vanishes meanwhile (an fd
        closed mid-scan) is counted, not raised, for the record-and-check-once race policy; other
        errors translate as in readlink()."""
        names = list(names)
        return _as_dict(names, *self.readlink_list(*parts, names=names, pid=pid))

    def readlink_list(
        self, *parts: object, names: list[str], pid: int | None = None
    ) -> tuple[list[str | None], int]:
        """readlinks() as a list in the order of `names`, None where the entry vanished."""
        return self._batch(speedups.backend.readlinkat_many, self.readlink, parts, names, pid)

    def read_many(
        self, *parts: object, names: Iterable[str], pid: int | None = None
    ) -> tuple[dict[str, str], int]:
        """The text of each small file NAME in directory `parts` (e.g. PID, "fdinfo"), in one
        batch; names may reach into subdirectories ("net/tcp"). Returns (name -> text, how many
        vanished); other errors translate as in read_text()."""
        names = list(names)
        return _as_dict(names, *self._batch(speedups.backend.read_many, self.read_text, parts,
                                            names, pid))

    def stats(self, *parts: object, names: Iterable[str], pid: int | None = None
              ) -> tuple[dict[str, tuple[int, int, int]], int]:
        """(st_mode, st_ino, st_dev) from stat() (following links) of each NAME in directory
        `parts` (e.g. PID, "fd"), relative to one directory fd. Returns (name -> stat, how many
        vanished); other errors translate as in stat()."""
        names = list(names)
        dir_fd = self._open_dir(parts, pid)
        if dir_fd is None:
            return {}, len(names)
        out: dict[str, tuple[int, int, int]] = {}
        vanished = 0
        try:
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dir_fd)
                except OSError as err:
                    if err.errno in VANISHED:
                        vanished += 1
                        continue
                    try:
                        st = self.stat(*parts, name, pid=pid)
                    except ProcGone:
                        vanished += 1
                        continue
                out[name] = (st.st_mode, st.st_ino, st.st_dev)
        finally:
            os.close(dir_fd)
        return out, vanished

    def _open_dir(self, parts: tuple[object, ...], pid: int | None) -> int | None:
        """A directory fd for the batch calls; None when the directory is gone (the process
        exited: every name counts as vanished); other errors translate as in listdir()."""
        path = self.path(*parts)
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            error = self._error(err, path, pid)
            if isinstance(error, ProcGone):
                return None
            raise error from err

    def _batch(self, batch: Any, one: Any, parts: tuple[object, ...], names: list[str],
               pid: int | None) -> tuple[list[str | None], int]:
        """`batch` (readlinkat_many, read_many: relative to a directory fd, the GIL released in
        the C versions) over `names`: (texts in the order of names, how many vanished). A name
        that failed with ENOENT or ESRCH (an fd closed, a task died between open and read)
        counts as vanished (None); any other failure is retried with `one` (readlink,
        read_text), which translates the errno into fdscope's errors."""
        dir_fd = self._open_dir(parts, pid)
        if dir_fd is None:
            return [None] * len(names), len(names)
        try:
            texts, errors = batch(dir_fd, names)
        finally:
            os.close(dir_fd)
        vanished = 0
        for i, err in errors:
            if err in VANISHED:
                vanished += 1
                continue
            try:
                texts[i] = one(*parts, names[i], pid=pid)
            except ProcGone:
                vanished += 1
        return texts, vanished

    def sysctl(self, name: str) -> str:
        """Text of /proc/sys/NAME, where NAME is 'fs/file-max' or 'fs.file-max'."""
        return self.read_text("sys", name.replace(".", "/"))


def _as_dict(names: list[str], texts: list[str | None], vanished: int
             ) -> tuple[dict[str, str], int]:
    """A batch's (texts, vanished) as (name -> text of the names that did not vanish, vanished)."""
    if not vanished:
        return dict(zip(names, texts, strict=True)), 0  # type: ignore[arg-type]
    return {name: text for name, text in zip(names, texts, strict=True) if text is not None}, \
        vanished
