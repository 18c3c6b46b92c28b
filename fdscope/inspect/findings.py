"""Rules that turn an InspectReport into findings (level, stable code, message, fds).

Levels follow impact: crit = broken now (events delivered for the wrong file, connections being
dropped, select() past FD_SETSIZE), warn = very likely a bug, info = a design observation. A
rule never fires on a coincidence of numbers: where the kernel could not confirm a
registration's status (verified: false), it is reported as info. Each rule, its level and the
reason are in docs/inspect.md ("Findings").

Codes: epoll_closed_registration, epoll_reused_registration, epoll_oneshot_disarmed,
epoll_et_blocking, epoll_multi_set, select_fd_setsize, fd_limit_near, close_wait_pile,
listen_backlog_full, listen_backlog_filling, busy_polling, zombie, kernel_thread; the io_uring
rules (uring_cq_overflow, uring_sq_full_no_waiter, uring_sq_unsubmitted, uring_files_near_full,
uring_foreign_submitter) are in fdscope.inspect.uring.
"""

from __future__ import annotations

from collections import defaultdict

from fdscope.inspect import uring
from fdscope.inspect.iomodel import EPOLL_CALLS, SELECT_CALLS, call_args, effective_call
from fdscope.inspect.model import EpollSet, FdEntry, InspectReport, Registration
from fdscope.model import Finding
from fdscope.parse.events import EPOLLET, EPOLLEXCLUSIVE, EPOLLONESHOT, is_disarmed

FD_SETSIZE = 1024  # include/uapi/linux/posix_types.h __FD_SETSIZE
FD_WARN_RATIO = 0.80
FD_CRIT_RATIO = 0.95
CLOSE_WAIT_PILE = 5
MAX_LISTED = 6  # fds named in one message before "..."
# Types whose read() blocks without O_NONBLOCK, where an edge-triggered loop's read-until-EAGAIN
# hangs. Not the counter fds (eventfd, timerfd, signalfd): one read drains them, so the loop
# never needs a second read (eventfd(2), timerfd_create(2), signalfd(2)).
ET_BLOCKING_TYPES = frozenset({"socket", "pipe", "chr", "inotify", "fanotify"})
# Files several epoll sets watching is a design, not a fault: counters used to wake every loop.
BROADCAST_TYPES = frozenset({"eventfd", "timerfd", "signalfd"})
ORDER = {"crit": 0, "warn": 1, "info": 2}


def _fds(fds: list[int] | tuple[int, ...]) -> str:
    head = ", ".join(map(str, fds[:MAX_LISTED]))
    return head + (f" ... (+{len(fds) - MAX_LISTED})" if len(fds) > MAX_LISTED else "")


def findings_for(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    out += _epoll(rep)
    out += _select(rep)
    out += _limit(rep)
    out += _sockets(rep)
    out += uring.findings(rep, rep.io_uring)
    if rep.io_model.kind == "busy_polling":
        out.append(Finding("warn", "busy_polling", rep.io_model.summary +
                           ": a loop that polls without blocking burns a core while idle"))
    return sorted(out, key=lambda f: ORDER[f.level])


def _epoll(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    if not rep.epoll:
        return out
    fdmap = rep.fd_map()
    disarmed: dict[int, list[int]] = defaultdict(list)
    et_blocking: dict[int, list[int]] = defaultdict(list)
    for s in rep.epoll:
        # Only registrations that are not ok, edge-triggered or one-shot can raise a finding.
        for r in [r for r in s.registrations
                  if r.status != "ok" or r.mask & (EPOLLET | EPOLLONESHOT)]:
            unverified = "" if r.verified else \
                " (unverified: the kernel could not be asked, see the notes)"
            if r.status == "closed":
                held = (f"the file stays open as fd {_fds(r.open_as)}" if r.open_as else
                        "no fd of this process holds it (another process or an in-flight "
                        "SCM_RIGHTS message keeps it alive)")
                out.append(Finding(
                    "warn" if r.verified else "info", "epoll_closed_registration",
                    f"epoll fd {s.epfd} still watches fd {r.tfd}, which is closed; {held}. "
                    "close() does not remove a registration while a dup keeps the file open, "
                    f"so events keep arriving for a number the program no longer owns"
                    f"{unverified}", (s.epfd, r.tfd, *r.open_as)))
            elif r.status == "reused":
                now = fdmap.get(r.tfd)
                what = f" (now {now.type} {now.target})" if now is not None else ""
                held = f"; the watched file is open as fd {_fds(r.open_as)}" if r.open_as else ""
                out.append(Finding(
                    "crit" if r.verified else "info", "epoll_reused_registration",
                    f"epoll fd {s.epfd}: registration for fd {r.tfd} watches a file that is no "
                    f"longer fd {r.tfd}{what}{held}; its events are delivered as if fd {r.tfd} "
                    f"were ready (wrong connection){unverified}", (s.epfd, r.tfd, *r.open_as)))
            if is_disarmed(r.mask):
                disarmed[s.epfd].append(r.tfd)
            if r.mask & EPOLLET and r.status == "ok":
                e = fdmap.get(r.tfd)
                if (e is not None and e.flags is not None and "O_NONBLOCK" not in e.flags
                        and e.type in ET_BLOCKING_TYPES):
                    et_blocking[s.epfd].append(r.tfd)
    for epfd, tfds in disarmed.items():
        out.append(Finding(
            "info", "epoll_oneshot_disarmed",
            f"epoll fd {epfd}: {len(tfds)} EPOLLONESHOT registration(s) already fired and are "
            f"disarmed (fd {_fds(tfds)}); they report nothing until EPOLL_CTL_MOD re-arms them "
            "(a connection stalls if the program forgets)", (epfd, *tfds)))
    for epfd, tfds in et_blocking.items():
        out.append(Finding(
            "warn", "epoll_et_blocking",
            f"epoll fd {epfd}: fd {_fds(tfds)} registered EPOLLET but not O_NONBLOCK; an "
            "edge-triggered loop must read until EAGAIN, which blocks forever on a blocking fd",
            (epfd, *tfds)))
    waiters: dict[int, set[int]] = defaultdict(set)
    for t in rep.threads:
        if effective_call(t) in EPOLL_CALLS and "epfd" in call_args(t):
            waiters[call_args(t)["epfd"]].add(t.tid)
    out += _multi_set(rep.epoll, fdmap, waiters)
    return out


def _file_of(r: Registration, fdmap: dict[int, FdEntry]) -> tuple[object, ...] | None:
    """What identifies the watched file across sets: the fds holding it, as the kernel
    confirmed them (kcmp). Unverified, only a socket's inode does (one open file per socket);
    anon-inode files all share one inode, pipe ends and paths opened twice share theirs."""
    if r.verified:
        return ("fds", *r.open_as) if r.open_as else None
    e = fdmap.get(r.tfd)
    if r.status != "ok" or e is None or e.type != "socket" or r.inode is None:
        return None
    return ("inode", r.inode, r.sdev)


def _multi_set(sets: list[EpollSet], fdmap: dict[int, FdEntry],
               waiters: dict[int, set[int]]) -> list[Finding]:
    if len(sets) < 2:
        return []
    watched: dict[tuple[object, ...], list[tuple[int, Registration]]] = defaultdict(list)
    for s in sets:
        for r in s.registrations:
            key = _file_of(r, fdmap)
            if key is not None:
                watched[key].append((s.epfd, r))
    multi = [regs for regs in watched.values() if len({epfd for epfd, _ in regs}) > 1]
    design, suspect = [], []
    for regs in multi:
        entry = fdmap.get(regs[0][1].tfd)
        listener = entry is not None and entry.socket is not None and \
            entry.socket.state == "LISTEN"
        exclusive = all(r.mask & EPOLLEXCLUSIVE for _, r in regs)
        broadcast = entry is not None and entry.type in BROADCAST_TYPES
        # Two loops handle one event only when two threads wait on two of these sets now;
        # sets one thread waits on in turn (postgres backends) wake once.
        loops = {tid for epfd, _ in regs for tid in waiters.get(epfd, ())}
        concurrent = len(loops) > 1 and len({epfd for epfd, _ in regs if waiters.get(epfd)}) > 1
        (suspect if concurrent and not (listener or exclusive or broadcast) else
         design).append(regs)
    out = []
    for level, group, why in (
            ("warn", suspect, "threads wait on these sets at once, so one event wakes two "
                              "loops that both handle it, unless EPOLLEXCLUSIVE is used"),
            ("info", design, "a design observation: a listener or wake-up counter watched by "
                             "per-thread loops wakes every loop (thundering herd) unless "
                             "EPOLLEXCLUSIVE is used; sets one thread waits on in turn wake "
                             "once")):
        if not group:
            continue
        names = [f"fd {_fds(sorted({r.tfd for _, r in regs}))} in epoll fds "
                 f"{', '.join(str(epfd) for epfd in sorted({epfd for epfd, _ in regs}))}"
                 for regs in group[:MAX_LISTED]]
        fds = sorted({r.tfd for regs in group for _, r in regs})
        out.append(Finding(
            level, "epoll_multi_set",
            f"{len(group)} file(s) registered in several epoll sets: {'; '.join(names)}"
            + (f" (+{len(group) - MAX_LISTED} more)" if len(group) > MAX_LISTED else "")
            + f"; {why}", tuple(fds)))
    return out


def _select(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    sel = [t for t in rep.threads if effective_call(t) in SELECT_CALLS]
    if not sel:
        return out
    highest = rep.summary.highest_fd
    nfds = max((t.args.get("nfds", 0) for t in sel), default=0)
    tids = ", ".join(str(t.tid) for t in sel[:MAX_LISTED])
    if nfds > FD_SETSIZE:
        out.append(Finding(
            "crit", "select_fd_setsize",
            f"thread {tids} calls select() with nfds={nfds} > FD_SETSIZE ({FD_SETSIZE}): glibc's "
            "fd_set holds fds 0-1023 only, so FD_SET beyond it overwrites memory (select(2) BUGS)"))
    elif highest is not None and highest >= FD_SETSIZE:
        out.append(Finding(
            "crit", "select_fd_setsize",
            f"thread {tids} waits in select() while the process holds fd {highest} >= "
            f"FD_SETSIZE ({FD_SETSIZE}): select() cannot watch it; move to poll or epoll",
            (highest,)))
    return out


def _limit(rep: InspectReport) -> list[Finding]:
    s = rep.summary
    if s.soft_limit is None or (not rep.fds and s.open_fds == 0):
        return []
    if s.open_fds >= s.soft_limit:
        return [Finding("crit", "fd_limit_near",
                        f"{s.open_fds} fds open with a soft limit of {s.soft_limit}: at or over "
                        "the limit (it was lowered below the open count, e.g. by prlimit); every "
                        "open()/accept() now fails with EMFILE ('Too many open files')")]
    ratio = s.open_fds / s.soft_limit
    if ratio < FD_WARN_RATIO:
        return []
    level = "crit" if ratio >= FD_CRIT_RATIO else "warn"
    return [Finding(level, "fd_limit_near",
                    f"{s.open_fds} fds open of a soft limit of {s.soft_limit} ({ratio:.0%}); "
                    "at the limit open()/accept() fail with EMFILE ('Too many open files')")]


def _sockets(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    close_wait = [e.fd for e in rep.fds_in_state("CLOSE_WAIT")]
    # TCP sockets absent from the tables are closed (unhashed): reset by the peer, or never
    # connected (fdscope.inspect.sockets). Held open, they leak like CLOSE_WAIT.
    reset = [e.fd for e in rep.fds_in_state("CLOSE") if e.socket.proto.startswith("tcp")]
    leaked = sorted(close_wait + reset)
    recheck = rep.close_recheck
    later = ""
    if recheck is not None:
        # Re-read a moment later: the ones closed meanwhile were being handled.
        still = set(recheck["still_open"])
        close_wait = [fd for fd in close_wait if fd in still]
        reset = [fd for fd in reset if fd in still]
        leaked = sorted(close_wait + reset)
        later = f", still open {recheck['delay_s']:g} s later"
        if recheck["closed"]:
            later += f" ({recheck['closed']} more closed meanwhile: being handled)"
    what = (f"{len(close_wait)} in CLOSE_WAIT (the peer closed)" if close_wait else "") + \
        (", " if close_wait and reset else "") + \
        (f"{len(reset)} TCP in CLOSE (reset by the peer or never connected)" if reset else "")
    if len(leaked) >= CLOSE_WAIT_PILE:
        out.append(Finding(
            "warn", "close_wait_pile",
            f"{len(leaked)} sockets this program never closed: {what} (fd {_fds(leaked)})"
            f"{later}; a classic fd leak", tuple(leaked)))
    elif leaked:
        out.append(Finding(
            "info", "close_wait_pile",
            f"{len(leaked)} socket(s) not closed yet: {what} (fd {_fds(leaked)})",
            tuple(leaked)))
    drops = rep.listen_drops or {}
    during = drops.get("overflows_during_scan", 0) + drops.get("drops_during_scan", 0)
    ever = drops.get("overflows", 0) + drops.get("drops", 0)
    for e in rep.fds_in_state("LISTEN"):
        sock = e.socket
        if sock.recv_q is None or sock.send_q is None:
            continue
        # include/net/sock.h sk_acceptq_is_full: full when ack_backlog > max_ack_backlog; then
        # net/ipv4/tcp_input.c tcp_conn_request drops each SYN and counts ListenOverflows. Crit
        # when the namespace's counters confirm drops; a full queue nobody connects to
        # (counters at 0, or unreadable) drops nothing yet: warn.
        if sock.recv_q > sock.send_q:
            seen = (f"; this network namespace dropped {during} connection(s) during the scan "
                    "(TcpExt ListenOverflows/ListenDrops)" if during else
                    f"; TcpExt ListenOverflows is {drops['overflows']} in this network namespace"
                    if "overflows" in drops else "")
            out.append(Finding(
                "crit" if during or ever else "warn", "listen_backlog_full",
                f"fd {e.fd} ({sock.local}) accept queue full: {sock.recv_q} waiting, backlog "
                f"{sock.send_q}; new connections are dropped until the program calls accept()"
                f"{seen}", (e.fd,)))
        elif sock.send_q and sock.recv_q >= max(1, int(sock.send_q * 0.8)):
            out.append(Finding(
                "info", "listen_backlog_filling",
                f"fd {e.fd} ({sock.local}) accept queue at {sock.recv_q} of backlog "
                f"{sock.send_q}: the program accepts slower than clients connect right now",
                (e.fd,)))
    return out
