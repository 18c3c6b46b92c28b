"""Top's flags: near_limit and growing from the counts, the others from inspect's own rules.

Inspect is not run on every process: a cheap look at what the scan already read picks the
processes that may have a finding, and inspect (fdscope.inspect.report.inspect_process, its
findings unchanged) decides for those only:
- stale_epoll: an epoll fd with a registration whose fd is closed, or whose inode is not the
  inode of the fd now (from the epoll fdinfo, fs/eventpoll.c ep_show_fdinfo);
- close_wait: a socket in CLOSE_WAIT (sock_diag, filtered by state in the kernel);
- backlog_full: a listener whose accept queue is over its backlog (sock_diag);
- select_risk: a process that holds an fd >= FD_SETSIZE with a thread sleeping in select or
  poll (its wchan, fs/select.c).
Only warn and crit findings become flags: a flag is a call to act.
"""

from __future__ import annotations

from collections.abc import Iterable

from fdscope.errors import FdscopeError
from fdscope.inspect import epoll as epoll_mod
from fdscope.inspect.findings import FD_CRIT_RATIO, FD_SETSIZE, FD_WARN_RATIO
from fdscope.inspect.iomodel import WCHAN_CALLS
from fdscope.model import LEVELS, Finding
from fdscope.proc import Proc

# inspect's finding code -> top's flag code
FROM_INSPECT = {
    "select_fd_setsize": "select_risk",
    "epoll_closed_registration": "stale_epoll",
    "epoll_reused_registration": "stale_epoll",
    "close_wait_pile": "close_wait",
    "listen_backlog_full": "backlog_full",
}
# growing: the count rose in each of this many consecutive refreshes.
GROWING_INTERVALS = 3
# wchan of a thread asleep in select() or poll(): fs/select.c (poll_schedule_timeout is
# static, so it shows up as itself or inlined into do_select / do_sys_poll).
SELECT_WCHANS = frozenset({"poll_schedule_timeout"} |
                          {k for k, v in WCHAN_CALLS.items() if v in ("select", "poll")})


def near_limit(fds: int | None, soft: int | None) -> Finding | None:
    """near_limit at inspect's fd_limit_near thresholds (warn >= 0.8, crit >= 0.95)."""
    if fds is None or not soft:
        return None
    ratio = fds / soft
    if ratio < FD_WARN_RATIO:
        return None
    level = "crit" if ratio >= FD_CRIT_RATIO else "warn"
    return Finding(level, "near_limit",
                   f"{fds} fds open of a soft limit of {soft} ({ratio:.0%}); at the limit "
                   "open()/accept() fail with EMFILE")


def growing(history: list[tuple[float, int]], soft: int | None) -> Finding | None:
    """growing when the count rose in each of the last GROWING_INTERVALS refreshes
    (`history`: (monotonic time, fds), oldest first)."""
    recent = history[-(GROWING_INTERVALS + 1):]
    if len(recent) < GROWING_INTERVALS + 1:
        return None
    if any(b[1] <= a[1] for a, b in zip(recent, recent[1:], strict=False)):
        return None
    span = recent[-1][0] - recent[0][0]
    if span <= 0:
        return None
    rate = (recent[-1][1] - recent[0][1]) * 60.0 / span
    eta = ""
    if soft:
        left = soft - recent[-1][1]
        eta = (f"; at this rate the soft limit ({soft}) is reached in about "
               f"{_minutes(left / rate)}" if left > 0 else f"; at the soft limit ({soft})")
    return Finding("warn", "growing",
                   f"fd count rose in each of the last {GROWING_INTERVALS} refreshes "
                   f"({recent[0][1]} -> {recent[-1][1]}, {rate:+.1f}/min){eta}")


def _minutes(m: float) -> str:
    if m < 1:
        return f"{max(1, round(m * 60))} s"
    if m < 120:
        return f"{m:.0f} min"
    return f"{m / 60:.1f} h"


def epoll_suspects(texts: dict[int, str], inodes: dict[int, int]) -> tuple[int, ...]:
    """The registrations (as tfds) in the epoll fdinfo `texts` (epfd -> text) that may be
    stale: their fd is not open (not in `inodes`: fd -> the inode it is open on, 0 where
    unknown), or it is open on another inode than the registration's. An anon-inode target
    reused by another anon-inode file (they share one inode) is not seen here: only inspect's
    kcmp check tells those apart."""
    sets, _errors = epoll_mod.parse_sets(dict(texts))
    out = [tfd for regs in sets.values() for tfd, _mask, _data, ino, _sdev in regs
           if (now := inodes.get(tfd)) is None or (now and ino is not None and now != ino)]
    return tuple(sorted(out))


def select_suspect(proc: Proc, pid: int) -> bool:
    """True when a thread of pid sleeps in select() or poll() (its wchan)."""
    try:
        tids = proc.listdir(pid, "task", pid=pid)
    except FdscopeError:
        return False
    names = [f"{tid}/wchan" for tid in tids if tid.isascii() and tid.isdigit()]
    try:
        texts, _gone = proc.read_many(pid, "task", names=names, pid=pid)
    except FdscopeError:
        return False
    return any(text.strip().split(".", 1)[0] in SELECT_WCHANS for text in texts.values())


def from_inspect(pid: int, proc: Proc) -> tuple[Finding, ...] | None:
    """Run inspect's rules on pid (no CPU sample, flags only where the rules need them) and turn
    its warn/crit findings into top's flags, one per code (the worst level, messages joined).
    None when the process could not be inspected (exited, denied)."""
    from fdscope.inspect.report import inspect_process

    try:
        rep = inspect_process(pid, proc=proc, sample=0, sections=("findings",), flags="needed")
    except FdscopeError:
        return None
    return merge(rep.findings)


def merge(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        code = FROM_INSPECT.get(f.code)
        if code is not None and f.level in ("warn", "crit"):
            by_code.setdefault(code, []).append(f)
    out = []
    for code, fs in by_code.items():
        level = max((f.level for f in fs), key=LEVELS.index)
        fds = tuple(sorted({fd for f in fs for fd in f.fds}))
        out.append(Finding(level, code, "; ".join(f.message for f in fs), fds))
    return tuple(out)


def suspicious_fd_limit(highest: int | None) -> bool:
    return highest is not None and highest >= FD_SETSIZE
