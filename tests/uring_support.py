"""Live io_uring targets for the tests: a child process holding rings in known states, and the
skip reason where io_uring cannot be used (kernel.io_uring_disabled, seccomp, old kernel)."""

from __future__ import annotations

import textwrap

import pytest

from fdscope.uring import available

UNAVAILABLE = available()
needs_uring = pytest.mark.skipif(UNAVAILABLE is not None,
                                 reason=f"io_uring unavailable here: {UNAVAILABLE}")

# A ring `busy` of 8 SQ entries with 3 NOPs written and published but not submitted (SQ tail
# 3, head 0), a READ on an empty pipe submitted (waiting in the kernel: PollList), 2 of 4
# fixed-file slots registered; a thread waits in io_uring_enter(busy, 0, 1, GETEVENTS).
# A ring `over` with CQ 2 entries and 4 NOPs completed, never reaped: 2 CQEs in the ring and 2
# on the overflow list. A ring `full`: its 8 SQ slots written, nothing submitted, no waiter.
LIVE_RINGS = textwrap.dedent(
    r"""
    import json, os, sys, threading, time
    from fdscope.uring import OP, Buffer, Ring
    mode = sys.argv[1]
    busy = Ring(8)
    rd, wr = os.pipe()
    buf = Buffer(64)
    busy.queue(OP["READ"], rd, addr=buf.addr, length=64, user_data=77)
    busy.submit()
    busy.register_files([rd, wr, -1, -1])
    for i in range(3):
        busy.queue(OP["NOP"], user_data=100 + i)   # published (tail 4 -> 7), not submitted
    over = Ring(1)                                  # SQ 1, CQ 2
    for i in range(4):
        over.queue(OP["NOP"], user_data=200 + i)
        over.submit()
    full = Ring(8) if mode == "full" else None
    if full is not None:
        for i in range(8):
            full.queue(OP["NOP"], user_data=300 + i)
    def wait():
        try:
            busy.enter(0, 1)
        except OSError:
            pass
    if mode == "waiter":
        threading.Thread(target=wait, daemon=True).start()
    print(json.dumps({"busy": busy.fd, "over": over.fd, "full": full.fd if full else None,
                      "pipe": [rd, wr]}), flush=True)
    while True:
        time.sleep(3600)
    """
)
