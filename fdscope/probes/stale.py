"""The dup/close pitfall: closing an fd does not remove its epoll registration.

Facts:
- epoll(7) Questions and answers, Q6: "A file descriptor is removed from an epoll set only when
  all the file descriptors referring to the underlying open file description have been closed."
  An interest-list entry is keyed by (fd number, open file description) (fs/eventpoll.c
  struct epoll_filefd); closing one of several fds of that file leaves it in place.
- The entry keeps reporting the number it was registered under (its `data`), although that
  number is now closed — or already reused for another file.
- If the number is reused (the next open() takes the lowest free number), events for the old
  file arrive under a number that now names another file.
- epoll_ctl(2) ERRORS: EPOLL_CTL_DEL on the closed number fails with EBADF (fd is not valid);
  on the surviving duplicate it fails with ENOENT (that number was never registered).

Consequence for an operator: an event loop that hands an fd to a child (fork) or dup()s it and
then closes its own copy keeps receiving events for a number it no longer owns, cannot remove
the entry, and may act on whatever file reuses that number. `fdscope inspect` flags such
entries `closed` (or `reused`) from /proc/PID/fdinfo.

Expected observation: see `expectations`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import select
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    Skip,
    StepSkip,
    error_text,
    judge,
    kernel_release,
    open_channel,
    skipped,
    stopped,
    wait_fds,
    write_bytes,
)

NAME = "stale"
TRANSPORTS = ("socketpair", "pipe", "tcp")
Q6 = "epoll(7) Q&A Q6: removed only when all fds of the open file description are closed"
INSPECTION_UNAVAILABLE = "inspection unavailable"


def _ctl_del(ep: select.epoll, fd: int) -> str:
    """EPOLL_CTL_DEL's outcome as 'ok' or the errno name."""
    try:
        ep.unregister(fd)
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    return "ok"


def _inspect_registration(epfd: int, tfd: int) -> dict | StepSkip | str:
    """fdscope's own inspection of this process: the entry for `tfd` in epoll fd `epfd`."""
    try:
        from fdscope.inspect import inspect_process
    except ImportError:
        return StepSkip(INSPECTION_UNAVAILABLE)
    try:
        # Only the epoll section, no CPU sampling: the registration status is all we need.
        doc = inspect_process(os.getpid(), sections=("epoll",), sample=0).to_json()
    except Exception as err:  # noqa: BLE001 - a failed inspection is an observation, not a crash
        return error_text(err)
    for ep in doc.get("epoll", []):
        if ep.get("epfd") == epfd:
            for reg in ep.get("registrations", []):
                if reg.get("tfd") == tfd:
                    return reg
            return f"LookupError: inspection shows no tfd {tfd} in epoll fd {epfd}"
    return f"LookupError: inspection shows no epoll fd {epfd}"


def _fdinfo_tfds(epfd: int) -> list[int] | str:
    from fdscope.errors import FdscopeError
    from fdscope.parse.fdinfo import parse_fdinfo
    from fdscope.proc import Proc

    pid = os.getpid()
    try:
        return [t.tfd for t in parse_fdinfo(Proc().read_text(pid, "fdinfo", epfd, pid=pid)).epoll]
    except FdscopeError as err:
        return error_text(err)


# Free fd numbers left below the registered fd: the inspection of our own process opens files
# (/proc/self/fd and friends) that take the lowest free numbers (open(2): "the lowest-numbered
# file descriptor not currently open"); without a gap they would land on the closed number and
# the entry would rightly look `reused`.
GAP = 16


def _lowest_free() -> int:
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.close(fd)
    return fd


# fds the inspection of our own process may hold at once (dir fds, /proc files, a netlink
# socket) above the probe's own.
INSPECT_FDS = 32


def _room_for(top: int, stack: ExitStack) -> None:
    """F_DUPFD to a number at or above the soft RLIMIT_NOFILE fails with EINVAL (fcntl(2)), and
    the inspection needs fds of its own: raise the soft limit for the probe (restored when
    `stack` unwinds), or skip when the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = top + 1 + INSPECT_FDS
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise Skip(f"needs fd numbers up to {need - 1} (fd {top} and room for the inspection), "
                   f"but the hard RLIMIT_NOFILE is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    stack.callback(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))


def observe(transport: str) -> Observation:
    obs = Observation(ctx={"transport": transport})
    rec = obs.record
    with ExitStack() as stack:
        _room_for(_lowest_free() + GAP + 1, stack)
        ch = open_channel(transport, stack)
        ep = select.epoll()
        stack.callback(ep.close)
        try:
            # The registered fd sits above GAP free numbers and is the file's only fd.
            orig = fcntl.fcntl(ch.rx, fcntl.F_DUPFD_CLOEXEC, _lowest_free() + GAP)
            ch.closers[orig] = lambda: os.close(orig)
            stack.callback(ch.close, orig)
            ch.close(ch.rx)
            ep.register(orig, select.EPOLLIN)
            dup = fcntl.fcntl(orig, fcntl.F_DUPFD_CLOEXEC, orig + 1)
            ch.closers[dup] = lambda: os.close(dup)
            stack.callback(ch.close, dup)
            obs.ctx.update(orig=orig, dup=dup, epfd=ep.fileno())
            ch.close(orig)
            write_bytes(ch.peer_tx, 10)
            rec("closed_reports", wait_fds(ep))
            rec("del_closed", _ctl_del(ep, orig))
            rec("del_dup", _ctl_del(ep, dup))
            reg = _inspect_registration(ep.fileno(), orig)
            if isinstance(reg, dict):
                rec("inspect.status", reg.get("status"))
                rec("inspect.open_as", sorted(reg.get("open_as") or []))
            else:
                rec("inspect.status", reg)
                rec("inspect.open_as", reg)
            # Reuse the closed number for another file: events now name the wrong file.
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            os.dup2(null, orig, inheritable=False)
            os.close(null)
            ch.closers[orig] = lambda: os.close(orig)
            rec("reused_reports", wait_fds(ep))
            reg = _inspect_registration(ep.fileno(), orig)
            rec("inspect.reused", reg.get("status") if isinstance(reg, dict) else reg)
            ch.close(orig)
            ch.close(dup)
            rec("all_closed", wait_fds(ep))
            rec("fdinfo_after", _fdinfo_tfds(ep.fileno()))
        except OSError as err:
            stopped(obs, err)
    return obs


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    # "?" where the observation stopped before the fds existed (its note says why).
    orig, dup, epfd = ctx.get("orig", "?"), ctx.get("dup", "?"), ctx.get("epfd", "?")
    return [
        Expect("closed_reports", f"register fd {orig}; dup it to {dup}; close {orig}; peer writes; wait",
               [f"{orig}:EPOLLIN"], Q6 + "; the entry reports its registered data"),
        Expect("del_closed", f"EPOLL_CTL_DEL fd {orig} (closed)", "EBADF",
               "epoll_ctl(2) ERRORS: EBADF fd is not a valid file descriptor"),
        Expect("del_dup", f"EPOLL_CTL_DEL fd {dup} (the open duplicate)", "ENOENT",
               "epoll_ctl(2) ERRORS: ENOENT fd is not registered with this epoll instance"),
        Expect("inspect.status", f"fdscope inspect (own pid): status of tfd {orig} in epoll fd {epfd}",
               "closed", "fdscope inspect: tfd not open, file still watched"),
        # contains, not equals: inspect matches by inode and device, and a pipe's two ends share
        # one inode, so the peer's write end is listed too although it is another open file.
        Expect("inspect.open_as", f"fdscope inspect: open_as (fds holding that file) includes {dup}",
               [dup], "fdscope inspect: same inode and device", "contains"),
        Expect("reused_reports", f"open /dev/null as fd {orig} (number reused); wait",
               [f"{orig}:EPOLLIN"], Q6 + "; the event still names the old number"),
        Expect("inspect.reused", f"fdscope inspect: status of tfd {orig} now", "reused",
               "fdscope inspect: tfd open but another inode"),
        Expect("all_closed", f"close {dup} (the file's last fd) and the /dev/null fd; wait", [],
               Q6 + " (fs/eventpoll.c eventpoll_release on the final fput)"),
        Expect("fdinfo_after", f"tfds left in own fdinfo of epoll fd {epfd}", [],
               "fs/eventpoll.c eventpoll_release_file removes the entry"),
    ]


NOTE = (
    "Remove an fd from epoll (EPOLL_CTL_DEL) before closing it: once closed, the entry can no "
    "longer be deleted by number and keeps reporting that number while any duplicate lives."
)


def run(transport: str = "socketpair", kernel: str | None = None) -> ProbeResult:
    try:
        obs = observe(transport)
    except Skip as why:
        return skipped(NAME, str(why), transport=transport)
    note = NOTE
    if transport == "pipe":
        note += (" On a pipe, inspect's open_as also lists the write end: both ends share one "
                 "inode, and /proc does not tell open files apart.")
    if any(isinstance(v, StepSkip) for v in obs.values.values()):
        note += " The inspection steps were skipped: fdscope.inspect is not available in this build."
    return judge(NAME, expectations(obs.ctx, kernel or kernel_release()), obs,
                 transport=transport, note=note)
