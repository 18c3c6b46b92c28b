"""FD_SETSIZE: select() cannot watch an fd numbered 1024 or above; poll() and epoll can.

Facts:
- select(2) NOTES/BUGS: an fd_set is a fixed-size buffer of FD_SETSIZE (1024 in glibc,
  <sys/select.h> __FD_SETSIZE) bits; "Executing FD_CLR() or FD_SET() with a value of fd that is
  negative or is equal to or larger than FD_SETSIZE will result in undefined behavior", and
  "all modern applications should instead use poll(2) or epoll(7), which do not suffer this
  limitation". In C the out-of-range FD_SET writes past the buffer (with _FORTIFY_SOURCE:
  "*** buffer overflow detected ***").
- CPython refuses before calling the kernel: Modules/selectmodule.c seq2set raises
  ValueError("filedescriptor out of range in select()") for fd >= FD_SETSIZE.
- The kernel itself has no such limit: fs/select.c core_sys_select caps nfds only at the fd
  table size, so a caller passing bigger bitmaps to the raw syscall is served.
- poll(2) and epoll(7) name fds by number in an array / interest list: no numeric ceiling
  below RLIMIT_NOFILE.

Consequence for an operator: a select()-based server works until its 1024th fd — after the soft
limit was raised above 1024, one busy hour turns into crashes or silent memory corruption.

Expected observation: see `expectations`. Needs a hard RLIMIT_NOFILE above 1024 (it raises its
own soft limit up to the hard limit for the duration, then restores it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import resource
import select
import socket
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    Skip,
    error_text,
    judge,
    kernel_release,
    skipped,
)

NAME = "fdsetsize"
TRANSPORTS = ("socketpair",)
# glibc <bits/typesizes.h> __FD_SETSIZE; what the experiment checks, not what it assumes.
GLIBC_FD_SETSIZE = 1024
SELECT_SRC = "select(2): fd_set holds FD_SETSIZE (glibc: 1024) fds; CPython selectmodule.c seq2set"


def _fd_free(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return True
    return False


def _place(src: int, want: int, stack: ExitStack) -> int:
    """A duplicate of `src` numbered `want` if that number is free, else the lowest free >= want."""
    fd = os.dup2(src, want, inheritable=False) if _fd_free(want) else fcntl.fcntl(
        src, fcntl.F_DUPFD_CLOEXEC, want)
    stack.callback(os.close, fd)
    return fd


def _select_result(fd: int) -> list[str] | str:
    try:
        r, w, x = select.select([fd], [], [], 0)
    except (ValueError, OSError) as err:
        return error_text(err)
    return ["readable"] if fd in r else []


def _raw_select(fd: int) -> list[str] | str:
    """select(2) through libc with a bitmap big enough for `fd` (what FD_SETSIZE does not allow)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = fd // bits + 1
    fdset = (ctypes.c_ulong * words)()
    fdset[fd // bits] |= 1 << (fd % bits)

    class Timeval(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]

    tv = Timeval(0, 0)
    n = libc.select(fd + 1, ctypes.byref(fdset), None, None, ctypes.byref(tv))
    if n < 0:
        err = ctypes.get_errno()
        return f"OSError: [Errno {err}] {os.strerror(err)}"
    return ["readable"] if fdset[fd // bits] & (1 << (fd % bits)) else []


def _poll_result(fd: int) -> list[str] | str:
    p = select.poll()
    try:
        p.register(fd, select.POLLIN)
        res = p.poll(0)
    except (ValueError, OSError) as err:
        return error_text(err)
    names = {select.POLLIN: "POLLIN", select.POLLHUP: "POLLHUP", select.POLLERR: "POLLERR"}
    return [name for fdr, mask in res if fdr == fd for bit, name in names.items() if mask & bit]


def _epoll_result(fd: int) -> list[str] | str:
    from fdscope.probes.core import event_names

    ep = select.epoll()
    try:
        ep.register(fd, select.EPOLLIN)
        return [n for fdr, mask in ep.poll(0, 8) if fdr == fd for n in event_names(mask)]
    except OSError as err:
        return error_text(err)
    finally:
        ep.close()


def observe() -> Observation:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = GLIBC_FD_SETSIZE + 1
    if hard != resource.RLIM_INFINITY and hard < need:
        raise Skip(f"hard RLIMIT_NOFILE is {hard}: fd {GLIBC_FD_SETSIZE} cannot be opened "
                   f"(needs a hard limit of at least {need})")
    obs = Observation(measured={"soft_limit": soft, "hard_limit": hard})
    raised = soft != resource.RLIM_INFINITY and soft < need + 8
    with ExitStack() as stack:
        if raised:
            new = need + 8 if hard == resource.RLIM_INFINITY else min(hard, need + 8)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            # Registered first so it runs last, after every fd above the old limit is closed.
            stack.callback(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
            obs.measured["soft_limit_during_probe"] = new
        a, b = socket.socketpair()
        stack.callback(a.close)
        stack.callback(b.close)
        b.send(b"x")  # make `a` readable so every API has something to report
        low = _place(a.fileno(), GLIBC_FD_SETSIZE - 1, stack)
        high = _place(a.fileno(), GLIBC_FD_SETSIZE, stack)
        obs.ctx.update(low=low, high=high)
        rec = obs.record
        rec("select.low", _select_result(low))
        rec("select.high", _select_result(high))
        rec("raw_select.high", _raw_select(high))
        rec("poll.low", _poll_result(low))
        rec("poll.high", _poll_result(high))
        rec("epoll.low", _epoll_result(low))
        rec("epoll.high", _epoll_result(high))
        obs.measured["fd_setsize"] = _observed_setsize(low, high, obs.values)
    obs.measured["soft_limit_restored"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft
    return obs


def _observed_setsize(low: int, high: int, values: dict) -> int | None:
    """The select() ceiling the two fds bracket: `high` if low was accepted and high refused."""
    if isinstance(values.get("select.low"), list) and isinstance(values.get("select.high"), str):
        return high if high == low + 1 else None
    return None


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    low, high = ctx["low"], ctx["high"]
    return [
        Expect("select.low", f"select() on fd {low} (readable)", ["readable"], SELECT_SRC),
        Expect("select.high", f"select() on fd {high}", "ValueError", SELECT_SRC, "error"),
        Expect("raw_select.high", f"raw select(2) via libc, nfds={high + 1}, {high + 1}-bit set",
               ["readable"], "fs/select.c core_sys_select: the kernel limits nfds only to the fd table"),
        Expect("poll.low", f"poll() on fd {low}", ["POLLIN"], "poll(2): fds are array entries"),
        Expect("poll.high", f"poll() on fd {high}", ["POLLIN"], "poll(2): no FD_SETSIZE limit"),
        Expect("epoll.low", f"epoll on fd {low}", ["EPOLLIN"], "epoll(7)"),
        Expect("epoll.high", f"epoll on fd {high}", ["EPOLLIN"], "epoll(7): no FD_SETSIZE limit"),
    ]


def note_for(obs: Observation) -> str:
    size = obs.measured.get("fd_setsize")
    text = (f"Observed FD_SETSIZE: {size} (select accepts fd {size - 1}, rejects fd {size}). "
            if size else "FD_SETSIZE could not be bracketed. ")
    text += ("The limit is the fd_set type, not the kernel: raw select(2) with a bigger bitmap "
             "works. Servers that may exceed 1023 fds must use poll or epoll.")
    return text


def run(kernel: str | None = None) -> ProbeResult:
    try:
        obs = observe()
    except Skip as why:
        return skipped(NAME, str(why), transport="socketpair")
    return judge(NAME, expectations(obs.ctx, kernel or kernel_release()), obs,
                 transport="socketpair", note=note_for(obs))
