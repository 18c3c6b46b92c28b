"""Rules that turn an InspectReport into findings (level, stable code, message).

Codes (documented in docs/inspect.md): epoll_closed_registration, epoll_reused_registration,
epoll_oneshot_disarmed, epoll_et_blocking, epoll_multi_set, select_fd_setsize, fd_limit_near,
close_wait_pile, listen_backlog_full, listen_backlog_filling, busy_polling, zombie, kernel_thread.
"""

from __future__ import annotations

from collections import defaultdict

from fdscope.inspect.iomodel import SELECT_CALLS, effective_call
from fdscope.inspect.model import InspectReport
from fdscope.model import Finding
from fdscope.parse.events import EPOLLET, EPOLLEXCLUSIVE, is_disarmed

FD_SETSIZE = 1024  # include/uapi/linux/posix_types.h __FD_SETSIZE
FD_WARN_RATIO = 0.80
FD_CRIT_RATIO = 0.95
CLOSE_WAIT_PILE = 5
MAX_LISTED = 6  # fds named in one message before "..."
# Types whose read() blocks without O_NONBLOCK (a regular file never does; epoll fds are skipped).
ET_BLOCKING_TYPES = frozenset({"socket", "pipe", "chr", "eventfd", "timerfd", "signalfd",
                               "inotify", "fanotify"})


def _fds(fds: list[int]) -> str:
    head = ", ".join(map(str, fds[:MAX_LISTED]))
    return head + (f" ... (+{len(fds) - MAX_LISTED})" if len(fds) > MAX_LISTED else "")


def findings_for(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    out += _epoll(rep)
    out += _select(rep)
    out += _limit(rep)
    out += _sockets(rep)
    if rep.io_model.kind == "busy_polling":
        out.append(Finding("warn", "busy_polling", rep.io_model.summary +
                           ": a loop that polls with a zero timeout burns a core while idle"))
    order = {"crit": 0, "warn": 1, "info": 2}
    return sorted(out, key=lambda f: order[f.level])


def _epoll(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    if not rep.epoll:
        return out
    fdmap = rep.fd_map()
    disarmed_masks: dict[int, bool] = {}
    sets_of: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    disarmed: dict[int, list[int]] = defaultdict(list)
    et_blocking: dict[int, list[int]] = defaultdict(list)
    for s in rep.epoll:
        for r in s.registrations:
            if r.inode is not None and r.sdev is not None:
                sets_of[(r.inode, r.sdev)].append((s.epfd, r.mask))
            if r.mask not in disarmed_masks:
                disarmed_masks[r.mask] = is_disarmed(r.mask)
            if r.status == "closed":
                held = (f"the file stays open as fd {_fds(list(r.open_as))}" if r.open_as else
                        "no fd of this process holds it (another process or an in-flight "
                        "SCM_RIGHTS message keeps it alive)")
                out.append(Finding(
                    "warn", "epoll_closed_registration",
                    f"epoll fd {s.epfd} still watches fd {r.tfd}, which is closed; {held}. "
                    "close() does not remove a registration while a dup keeps the file open, "
                    "so events keep arriving for a number the program no longer owns"))
            elif r.status == "reused":
                now = fdmap.get(r.tfd)
                what = f" (now {now.type} {now.target})" if now is not None else ""
                held = f"; the watched file is open as fd {_fds(list(r.open_as))}" if r.open_as else ""
                out.append(Finding(
                    "crit", "epoll_reused_registration",
                    f"epoll fd {s.epfd}: registration for fd {r.tfd} watches a file that is no "
                    f"longer fd {r.tfd}{what}{held}; its events are delivered as if fd {r.tfd} "
                    "were ready (wrong connection)"))
            if disarmed_masks[r.mask]:
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
            "(a connection stalls if the program forgets)"))
    for epfd, tfds in et_blocking.items():
        out.append(Finding(
            "warn", "epoll_et_blocking",
            f"epoll fd {epfd}: fd {_fds(tfds)} registered EPOLLET but not O_NONBLOCK; an "
            "edge-triggered loop must read until EAGAIN, which blocks forever on a blocking fd"))
    multi = [(key, regs) for key, regs in sets_of.items() if len({epfd for epfd, _ in regs}) > 1]
    if multi:
        exclusive = all(all(mask & EPOLLEXCLUSIVE for _, mask in regs) for _, regs in multi)
        names = []
        for (ino, _dev), regs in multi[:MAX_LISTED]:
            holders = [e.fd for e in rep.fds if e.inode == ino]
            label = f"fd {_fds(holders)}" if holders else f"inode {ino}"
            names.append(f"{label} in epoll fds {', '.join(str(epfd) for epfd, _ in regs)}")
        out.append(Finding(
            "info" if exclusive else "warn", "epoll_multi_set",
            f"{len(multi)} file(s) registered in several epoll sets: {'; '.join(names)}"
            + (" (all EPOLLEXCLUSIVE: a deliberate thundering-herd guard)" if exclusive else
               "; every set wakes for the same event unless EPOLLEXCLUSIVE is used")))
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
            f"FD_SETSIZE ({FD_SETSIZE}): select() cannot watch it; move to poll or epoll"))
    return out


def _limit(rep: InspectReport) -> list[Finding]:
    s = rep.summary
    if not s.soft_limit or not rep.fds and s.open_fds == 0:
        return []
    ratio = s.open_fds / s.soft_limit
    if ratio < FD_WARN_RATIO:
        return []
    level = "crit" if ratio >= FD_CRIT_RATIO else "warn"
    return [Finding(level, "fd_limit_near",
                    f"{s.open_fds} fds open of a soft limit of {s.soft_limit} ({ratio:.0%}); "
                    "at the limit open()/accept() fail with EMFILE ('Too many open files')")]


def _sockets(rep: InspectReport) -> list[Finding]:
    out: list[Finding] = []
    picked = rep.fds_in_state("CLOSE_WAIT", "LISTEN")
    close_wait = [e.fd for e in picked if e.socket.state == "CLOSE_WAIT"]
    if len(close_wait) >= CLOSE_WAIT_PILE:
        out.append(Finding(
            "warn", "close_wait_pile",
            f"{len(close_wait)} sockets in CLOSE_WAIT (fd {_fds(close_wait)}): the peer closed "
            "and this program never called close(), a classic fd leak"))
    elif close_wait:
        out.append(Finding(
            "info", "close_wait_pile",
            f"{len(close_wait)} socket(s) in CLOSE_WAIT (fd {_fds(close_wait)}): the peer closed "
            "and this program has not closed yet"))
    for e in picked:
        sock = e.socket
        if sock.state != "LISTEN" or sock.recv_q is None or sock.send_q is None:
            continue
        # include/net/sock.h sk_acceptq_is_full: full when ack_backlog > max_ack_backlog.
        if sock.recv_q > sock.send_q:
            out.append(Finding(
                "crit", "listen_backlog_full",
                f"fd {e.fd} ({sock.local}) accept queue full: {sock.recv_q} waiting, backlog "
                f"{sock.send_q}; new connections are dropped until the program calls accept()"))
        elif sock.send_q and sock.recv_q >= max(1, int(sock.send_q * 0.8)):
            out.append(Finding(
                "warn", "listen_backlog_filling",
                f"fd {e.fd} ({sock.local}) accept queue at {sock.recv_q} of backlog "
                f"{sock.send_q}: the program accepts slower than clients connect"))
    return out
