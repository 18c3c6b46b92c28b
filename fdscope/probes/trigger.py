"""Level- versus edge-triggered epoll, for input (EPOLLIN) and for output space (EPOLLOUT).

Facts (epoll(7), "Level-triggered and edge-triggered"; fs/eventpoll.c):
- Level-triggered (the default): epoll_wait reports an fd for as long as it is ready. After
  each report the kernel puts a level-triggered entry back on the ready list
  (ep_send_events), so the next wait polls the file again.
- Edge-triggered (EPOLLET): an fd is reported when a wake-up reaches it — new data arriving,
  buffer space freed — and not again until the next wake-up, however much data is still
  unread. epoll(7) says ET users must "wait for an event only after read(2) or write(2)
  return EAGAIN".
- Pipes: from Linux 5.5 to 5.13 a write into a non-empty pipe woke nobody (fs/pipe.c
  pipe_write, "was_empty"); 5.14 restored a wake-up on every write for epoll users
  (commit "pipe: make pipe writes always wake up readers"), later kept via pipe->poll_usage.

Consequence for an operator:
- An ET loop that reads "some" data and waits again stalls with bytes in the buffer.
- A level-triggered loop that keeps EPOLLOUT registered with nothing to send spins: every
  wait returns at once with a writable socket (100% CPU, no progress).

Expected observation: the step tables in `_epollin_expects` and `_epollout_expects`.
"""

from __future__ import annotations

import select
import time
from contextlib import ExitStack

from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    Skip,
    drain,
    fill_to_eagain,
    judge,
    kernel_version,
    open_channel,
    read_some,
    read_to_eagain,
    skipped,
    stopped,
    wait_events,
    write_bytes,
)

NAME = "trigger"
MODES = ("level", "edge")
TRANSPORTS = ("socketpair", "pipe", "tcp")
BUSY_WAITS = 1000

EP7 = "epoll(7) Level-triggered and edge-triggered"
EP7_ET = "epoll(7): ET reports only on a change (a wake-up); wait only after EAGAIN"
EP7_LT = "epoll(7): LT reports while the fd is ready (fs/eventpoll.c ep_send_events re-queues LT items)"
CTL_ADD = "fs/eventpoll.c ep_insert: an fd already ready at EPOLL_CTL_ADD is queued at once"


def observe(mode: str, transport: str) -> Observation:
    """Run the steps on a fresh channel and record what epoll_wait reported at each."""
    obs = Observation(ctx={"mode": mode, "transport": transport})
    flag = select.EPOLLET if mode == "edge" else 0
    with ExitStack() as stack:
        _observe_epollin(obs, flag, transport, stack)
    with ExitStack() as stack:
        _observe_epollout(obs, flag, transport, stack)
    return obs


def _observe_epollin(obs: Observation, flag: int, transport: str, stack: ExitStack) -> None:
    ch = open_channel(transport, stack)
    ep = select.epoll()
    stack.callback(ep.close)
    ep.register(ch.rx, select.EPOLLIN | flag)
    rec = obs.record
    try:
        rec("in.idle", wait_events(ep, ch.rx))
        write_bytes(ch.peer_tx, 100)
        rec("in.write100", wait_events(ep, ch.rx))
        obs.measured["read_partial"] = read_some(ch.rx, 10)
        rec("in.read10", wait_events(ep, ch.rx))
        write_bytes(ch.peer_tx, 1)
        rec("in.write1", wait_events(ep, ch.rx))
        rec("in.drained_bytes", read_to_eagain(ch.rx))
        rec("in.drained", wait_events(ep, ch.rx))
    except OSError as err:
        stopped(obs, err, "EPOLLIN part stopped")


def _observe_epollout(obs: Observation, flag: int, transport: str, stack: ExitStack) -> None:
    ch = open_channel(transport, stack)
    ep = select.epoll()
    stack.callback(ep.close)
    rec = obs.record
    try:
        ep.register(ch.tx, select.EPOLLOUT | flag)
        rec("out.first", wait_events(ep, ch.tx))
        rec("out.again", wait_events(ep, ch.tx))
        hits = 0
        t0 = time.perf_counter()
        for _ in range(BUSY_WAITS):
            # timeout 0: a busy loop never sleeps; we count how often it is told "writable".
            if ep.poll(0, 8):
                hits += 1
        busy_ms = (time.perf_counter() - t0) * 1000
        rec("out.busy", hits)
        obs.measured["busy_loop_ms"] = round(busy_ms, 2)
        obs.measured["filled_bytes"] = fill_to_eagain(ch.tx, transport)
        rec("out.full", wait_events(ep, ch.tx))
        obs.measured["drained_bytes"] = drain(ch.peer_rx, transport, ch.tx)
        rec("out.drained", wait_events(ep, ch.tx))
        rec("out.drained_again", wait_events(ep, ch.tx))
    except OSError as err:
        stopped(obs, err, "EPOLLOUT part stopped")


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    mode, transport = ctx["mode"], ctx["transport"]
    return _epollin_expects(mode, transport, kernel) + _epollout_expects(mode, transport)


def _epollin_expects(mode: str, transport: str, kernel: str) -> list[Expect]:
    lt = mode == "level"
    reg = "EPOLLIN" if lt else "EPOLLIN|EPOLLET"
    ins = ["EPOLLIN"]
    write1 = Expect("in.write1", "peer writes 1 more byte; wait", ins,
                    EP7_ET if not lt else EP7_LT)
    if not lt and transport == "pipe" and (5, 5) <= kernel_version(kernel) < (5, 14):
        # fs/pipe.c 5.5-5.13 woke readers only when the pipe was empty (stable trees backported
        # the 5.14 fix), so either outcome is this kernel's documented behaviour.
        write1 = Expect("in.write1", "peer writes 1 more byte into a non-empty pipe; wait",
                        [ins, []], "fs/pipe.c pipe_write was_empty (Linux 5.5-5.13)", "one_of")
    return [
        Expect("in.idle", f"register {reg}; wait with nothing written", [],
               "epoll(7): nothing is ready, nothing is reported"),
        Expect("in.write100", "peer writes 100 bytes; wait", ins, EP7),
        Expect("in.read10", "read 10 of 100 bytes; wait", ins if lt else [],
               EP7_LT if lt else EP7_ET + " (90 bytes still unread)"),
        write1,
        Expect("in.drained_bytes", "read until EAGAIN: bytes read", 91,
               "100 - 10 + 1 bytes were pending"),
        Expect("in.drained", "wait after EAGAIN", [],
               "epoll(7): an empty buffer is not ready, in either mode"),
    ]


def _epollout_expects(mode: str, transport: str) -> list[Expect]:
    lt = mode == "level"
    reg = "EPOLLOUT" if lt else "EPOLLOUT|EPOLLET"
    out = ["EPOLLOUT"]
    return [
        Expect("out.first", f"register {reg} ({_buffer(transport)} empty); wait", out, CTL_ADD),
        Expect("out.again", "wait again, nothing written", out if lt else [],
               EP7_LT if lt else EP7_ET),
        Expect("out.busy", f"{BUSY_WAITS} waits with timeout 0: how many reported EPOLLOUT",
               BUSY_WAITS if lt else 0,
               "epoll(7) LT: a writable fd is reported on every wait (busy loop)"
               if lt else EP7_ET),
        Expect("out.full", f"fill the {_buffer(transport)} until EAGAIN; wait", [],
               "epoll(7): a full buffer is not writable"),
        Expect("out.drained", "peer drains everything; wait", out,
               "epoll(7): space freed is a change (the reader's wake-up)"),
        Expect("out.drained_again", "wait again", out if lt else [],
               EP7_LT if lt else EP7_ET),
    ]


def _buffer(transport: str) -> str:
    return "pipe" if transport == "pipe" else "send buffer"


def note_for(mode: str, transport: str, obs: Observation) -> str:
    parts = []
    if mode == "level":
        ms = obs.measured.get("busy_loop_ms")
        if ms is not None:
            parts.append(
                f"{BUSY_WAITS} level-triggered waits on a writable fd returned at once in {ms} ms: "
                "keep EPOLLOUT registered only while output is pending, or the loop spins."
            )
    else:
        parts.append(
            "Edge-triggered: after a partial read the rest of the data is not reported again; "
            "read (and write) until EAGAIN before waiting."
        )
    if transport == "pipe":
        parts.append(
            "Pipe wake-ups on writes into a non-empty pipe changed in Linux 5.5 and were restored "
            "in 5.14 (fs/pipe.c)."
        )
    return " ".join(parts)


def run(mode: str = "level", transport: str = "socketpair", kernel: str | None = None) -> ProbeResult:
    from fdscope.probes.core import kernel_release

    kernel = kernel or kernel_release()
    try:
        obs = observe(mode, transport)
    except Skip as why:
        return skipped(NAME, str(why), variant=mode, transport=transport)
    return judge(NAME, expectations(obs.ctx, kernel), obs, variant=mode, transport=transport,
                 note=note_for(mode, transport, obs))
