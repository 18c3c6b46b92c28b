"""fdscope's errors and the exit codes they map to (documented in README, shared by all commands)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_PROCESS = 3
EXIT_ACCESS = 4
EXIT_UNSUPPORTED = 5


class FdscopeError(Exception):
    """Base of every error fdscope reports; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NoSuchProcess(FdscopeError):
    """The process does not exist, or exited while it was being read."""

    exit_code = EXIT_NO_PROCESS

    def __init__(self, pid: int, message: str | None = None) -> None:
        super().__init__(message or f"no process with pid {pid}")
        self.pid = pid


class AccessDenied(FdscopeError):
    """/proc refused a read; the message says which access is needed."""

    exit_code = EXIT_ACCESS

    def __init__(self, path: str, needed: str | None = None) -> None:
        msg = f"permission denied reading {path}"
        if needed:
            msg += f": {needed}"
        super().__init__(msg)
        self.path = path
        self.needed = needed


class Unsupported(FdscopeError):
    """The platform or kernel lacks a feature fdscope needs."""

    exit_code = EXIT_UNSUPPORTED


class ParseError(FdscopeError):
    """A /proc file did not have the expected shape."""

    exit_code = EXIT_FAILURE

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"cannot parse {what}: {detail}")
        self.what = what
        self.detail = detail


class ProcGone(FdscopeError):
    """A single /proc entry vanished (e.g. an fd closed mid-scan); the process may still exist.

    Loops catch this, record the race and check the process once at the end."""

    exit_code = EXIT_NO_PROCESS


class UsageError(FdscopeError):
    """Bad arguments detected after click parsed them."""

    exit_code = EXIT_USAGE


class OutOfFds(FdscopeError):
    """fdscope itself could not get a file descriptor: its own RLIMIT_NOFILE (EMFILE) or the
    system's file table (ENFILE) is exhausted. The message names the limit."""

    exit_code = EXIT_FAILURE

    def __init__(self, errno_value: int, what: str | None = None) -> None:
        super().__init__(out_of_fds_message(errno_value, what))
        self.errno = errno_value


def out_of_fds_message(errno_value: int, what: str | None = None) -> str:
    """One line naming the limit behind EMFILE or ENFILE (open(2) ERRORS)."""
    import errno

    doing = f" ({what})" if what else ""
    if errno_value == errno.ENFILE:
        return (f"out of file descriptors{doing}: the system-wide limit on open files "
                "(fs.file-max) is reached (ENFILE); see `fdscope limits`")
    try:
        import resource  # an extension module: importing it needs an fd, which may be missing
    except (ImportError, OSError):
        soft_text, hard_text = "", ""
    else:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft_text = f" of {soft}"
        hard_text = " (hard limit " + \
            ("unlimited" if hard == resource.RLIM_INFINITY else str(hard)) + ")"
    return (f"out of file descriptors{doing}: fdscope reached its soft RLIMIT_NOFILE{soft_text} "
            f"(EMFILE); raise it with `ulimit -n`{hard_text} and retry")


def is_out_of_fds(err: BaseException) -> bool:
    import errno

    return isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE)
