"""EPOLLONESHOT: one report, then silence until EPOLL_CTL_MOD re-arms the entry.

Facts:
- epoll_ctl(2) EPOLLONESHOT: "after an event is pulled out with epoll_wait(2) the associated
  file descriptor is internally disabled and no other events will be reported by the epoll
  interface. The user must call epoll_ctl() with EPOLL_CTL_MOD to rearm the file descriptor
  with a new event mask."
- epoll_ctl(2): EPOLLERR and EPOLLHUP are always reported, "it is not necessary to set" them;
  fs/eventpoll.c ep_insert/ep_modify store them in the entry's mask.
- fs/eventpoll.c ep_send_events: the disabling is done by clearing the entry's mask down to
  EP_PRIVATE_BITS (EPOLLWAKEUP, EPOLLONESHOT, EPOLLET, EPOLLEXCLUSIVE). ep_show_fdinfo prints
  that mask, so /proc/PID/fdinfo/EPFD shows a disarmed entry as "events: 40000000".

Consequence for an operator: a worker that forgets to re-arm after handling an event never
hears from that connection again, although the fd is still in the set and data is waiting.
`fdscope inspect` flags such entries from fdinfo; this probe shows the mask losing its bits.

Expected observation: see `expectations`.
"""

from __future__ import annotations

import os
import select
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    error_text,
    judge,
    kernel_release,
    open_channel,
    stopped,
    wait_events,
    write_bytes,
)

NAME = "oneshot"
TRANSPORTS = ("socketpair", "pipe", "tcp")

CTL = "epoll_ctl(2) EPOLLONESHOT"
FDINFO = "fs/eventpoll.c ep_show_fdinfo prints the mask; ep_insert adds EPOLLERR|EPOLLHUP"
DISARM = "fs/eventpoll.c ep_send_events: mask &= EP_PRIVATE_BITS after one report"


def fdinfo_mask(epfd: int, tfd: int) -> list[str] | str:
    """The decoded mask of `tfd`'s entry in our own /proc/PID/fdinfo/EPFD, via fdscope's parser."""
    from fdscope.errors import FdscopeError
    from fdscope.parse.events import decode_epoll_mask
    from fdscope.parse.fdinfo import parse_fdinfo
    from fdscope.proc import Proc

    pid = os.getpid()
    try:
        info = parse_fdinfo(Proc().read_text(pid, "fdinfo", epfd, pid=pid))
    except FdscopeError as err:
        return error_text(err)
    for target in info.epoll:
        if target.tfd == tfd:
            return list(decode_epoll_mask(target.events))
    return f"LookupError: no tfd {tfd} in fdinfo of epoll fd {epfd}"


def observe(transport: str) -> Observation:
    obs = Observation(ctx={"transport": transport})
    rec = obs.record
    with ExitStack() as stack:
        ch = open_channel(transport, stack)
        ep = select.epoll()
        stack.callback(ep.close)
        try:
            ep.register(ch.rx, select.EPOLLIN | select.EPOLLONESHOT)
            rec("fdinfo.armed", fdinfo_mask(ep.fileno(), ch.rx))
            write_bytes(ch.peer_tx, 10)
            rec("first", wait_events(ep, ch.rx))
            rec("fdinfo.disarmed", fdinfo_mask(ep.fileno(), ch.rx))
            write_bytes(ch.peer_tx, 10)
            rec("more_data", wait_events(ep, ch.rx))
            rec("again", wait_events(ep, ch.rx))
            ep.modify(ch.rx, select.EPOLLIN | select.EPOLLONESHOT)
            rec("fdinfo.rearmed", fdinfo_mask(ep.fileno(), ch.rx))
            rec("rearmed", wait_events(ep, ch.rx))
            rec("after_rearmed", wait_events(ep, ch.rx))
        except OSError as err:
            stopped(obs, err)
    return obs


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    # epoll_ctl(2): EPOLLERR and EPOLLHUP are always waited for; fs/eventpoll.c ep_insert and
    # ep_modify OR them into the stored mask, so fdinfo shows them too.
    armed = ["EPOLLIN", "EPOLLERR", "EPOLLHUP", "EPOLLONESHOT"]
    return [
        Expect("fdinfo.armed", "register EPOLLIN|EPOLLONESHOT; mask in own fdinfo", armed, FDINFO),
        Expect("first", "peer writes 10 bytes; wait", ["EPOLLIN"], CTL),
        Expect("fdinfo.disarmed", "mask in own fdinfo after that report", ["EPOLLONESHOT"], DISARM),
        Expect("more_data", "peer writes 10 more bytes (20 unread); wait", [], CTL),
        Expect("again", "wait again", [], CTL),
        Expect("fdinfo.rearmed", "EPOLL_CTL_MOD EPOLLIN|EPOLLONESHOT; mask in own fdinfo", armed,
               CTL + ": re-arm with EPOLL_CTL_MOD"),
        Expect("rearmed", "wait", ["EPOLLIN"],
               "fs/eventpoll.c ep_modify polls the file: pending data is reported"),
        Expect("after_rearmed", "wait again", [], CTL),
    ]


NOTE = (
    "A disarmed ONESHOT entry stays in the interest list with only flag bits left in its mask "
    "(fdinfo 'events: 40000000'); nothing is reported until EPOLL_CTL_MOD."
)


def run(transport: str = "socketpair", kernel: str | None = None) -> ProbeResult:
    obs = observe(transport)
    return judge(NAME, expectations(obs.ctx, kernel or kernel_release()), obs,
                 transport=transport, note=NOTE)
