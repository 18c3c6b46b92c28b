"""io_uring: the SQ and CQ ring indices in fdinfo move as io_uring(7) says.

Facts:
- io_uring(7): the application writes SQEs and advances the SQ tail; the kernel consumes them
  on io_uring_enter(2) (without SQPOLL) and advances the SQ head; it posts a CQE per finished
  request at the CQ tail; the application advances the CQ head once it has read them.
- io_uring_enter(2): returns the number of SQEs consumed; with IORING_ENTER_GETEVENTS and
  min_complete it waits until that many completions are available.
- IORING_OP_NOP completes at once; IORING_OP_READ on an empty pipe cannot, so io_uring arms
  an internal poll and the request waits on the ring's poll list (io_uring/poll.c
  io_arm_poll_handler), completing when the pipe becomes readable.
- io_uring/fdinfo.c io_uring_show_fdinfo prints SqHead/SqTail/CqHead/CqTail (raw u32
  counters, with SqMask/CqMask), the SQEs between head and tail, the CQEs between head and
  tail, and the poll list ("op=%d").

Consequence for an operator: fdinfo tells where a ring stands. SqTail - SqHead is work the
program wrote but nobody submitted; CqTail - CqHead is work done that the program has not
reaped; the poll list is requests waiting for their file. fdscope inspect reads exactly these.

Expected observation: see `expectations`. Where io_uring cannot be used (the sysctl
kernel.io_uring_disabled, a seccomp filter, a kernel without it), the probe is skipped with the
reason and `fdscope probe io_uring` exits 5.
"""

from __future__ import annotations

import os

from fdscope.parse.uring import parse_uring
from fdscope.probes.core import (
    Expect,
    Observation,
    ProbeResult,
    error_text,
    judge,
    kernel_release,
    skipped,
    stopped,
)

NAME = "io_uring"
RING = "io_uring(7): the kernel consumes SQEs from the SQ head, posts CQEs at the CQ tail"
ENTER = "io_uring_enter(2): returns the number of SQEs consumed"
FDINFO = "io_uring/fdinfo.c io_uring_show_fdinfo"
POLL = "io_uring/poll.c io_arm_poll_handler: a read that would block waits on the poll list"


def _fdinfo(fd: int) -> dict[str, object]:
    """The ring's own fdinfo, decoded: the indices and counts the steps compare."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="utf-8", errors="surrogateescape") as f:
        u = parse_uring(f.read())
    return {"sq_head": u.sq_head, "sq_tail": u.sq_tail, "cq_head": u.cq_head,
            "cq_tail": u.cq_tail, "sqes": [e.opcode for e in u.sqes],
            "cqes": [e.user_data for e in u.cqes],
            "poll": [p.opcode for p in u.poll_list or ()], "form": u.form}


def observe() -> Observation:
    from fdscope.uring import OP, Buffer, Ring, Unavailable

    obs = Observation()
    rec = obs.record
    try:
        ring = Ring(8)
    except Unavailable as err:
        obs.ctx["unavailable"] = err.strerror
        return obs
    rd = wr = -1
    try:
        obs.measured["sq_entries"] = ring.sq_entries
        obs.measured["cq_entries"] = ring.cq_entries
        obs.measured["features"] = hex(ring.features)
        start = _fdinfo(ring.fd)
        obs.measured["fdinfo_form"] = start["form"]
        rec("empty", [start["sq_head"], start["sq_tail"], start["cq_head"], start["cq_tail"]])
        for i in range(3):
            ring.queue(OP["NOP"], user_data=i + 1)
        queued = _fdinfo(ring.fd)
        rec("queued_tail", [queued["sq_head"], queued["sq_tail"]])
        rec("queued_sqes", queued["sqes"])
        rec("submit", ring.submit())
        done = _fdinfo(ring.fd)
        rec("submitted_head", [done["sq_head"], done["sq_tail"]])
        rec("completed_tail", [done["cq_head"], done["cq_tail"]])
        rec("cqes_listed", done["cqes"])
        rec("reaped", sorted(c.user_data for c in ring.completions()))
        rec("reaped_head", _fdinfo(ring.fd)["cq_head"])
        rd, wr = os.pipe()
        buf = Buffer(16)
        ring.queue(OP["READ"], rd, addr=buf.addr, length=16, user_data=77)
        rec("read_submit", ring.submit())
        waiting = _fdinfo(ring.fd)
        rec("read_waits", waiting["poll"])
        rec("read_no_cqe", waiting["cq_tail"])
        os.write(wr, b"hello")
        ring.enter(0, 1)
        got = list(ring.completions())
        rec("read_cqe", [[c.user_data, c.res] for c in got])
        rec("read_data", buf.read(5).decode("ascii", "replace"))
        after = _fdinfo(ring.fd)
        rec("read_done", [after["cq_head"], after["cq_tail"], len(after["poll"])])
    except OSError as err:
        stopped(obs, err)
    except (TypeError, ValueError) as err:  # a field this kernel does not print
        obs.notes.append(f"Stopped: {error_text(err)}.")
    finally:
        for fd in (rd, wr):
            if fd >= 0:
                os.close(fd)
        ring.close()
    return obs


def expectations(ctx: dict, kernel: str) -> list[Expect]:
    return [
        Expect("empty", "new ring: fdinfo SqHead, SqTail, CqHead, CqTail", [0, 0, 0, 0],
               FDINFO),
        Expect("queued_tail", "write 3 NOP SQEs, advance the SQ tail, no syscall: SqHead, "
               "SqTail", [0, 3], RING + "; the tail is shared memory the kernel reads"),
        Expect("queued_sqes", "fdinfo lists the unsubmitted SQEs (opcode)", ["NOP"] * 3,
               FDINFO + ": the SQEs between SqHead and SqTail"),
        Expect("submit", "io_uring_enter(fd, 3, 0, 0): SQEs consumed", 3, ENTER),
        Expect("submitted_head", "after enter: SqHead, SqTail", [3, 3], RING),
        Expect("completed_tail", "NOPs complete inline: CqHead, CqTail", [0, 3],
               RING + "; IORING_OP_NOP completes at once"),
        Expect("cqes_listed", "fdinfo lists the unreaped CQEs (user_data)", [1, 2, 3],
               FDINFO + ": the CQEs between CqHead and CqTail"),
        Expect("reaped", "read the CQEs: user_data", [1, 2, 3], RING),
        Expect("reaped_head", "advance the CQ head: fdinfo CqHead", 3,
               RING + "; the head is shared memory the kernel reads"),
        Expect("read_submit", "READ on an empty pipe: SQEs consumed", 1, ENTER),
        Expect("read_waits", "the read waits on the poll list (opcode number)", [22],
               POLL + "; IORING_OP_READ = 22 (include/uapi/linux/io_uring.h)"),
        Expect("read_no_cqe", "no completion yet: CqTail", 3, POLL),
        Expect("read_cqe", "write 5 bytes to the pipe; enter(min_complete=1): [user_data, res]",
               [[77, 5]], "io_uring_enter(2) IORING_ENTER_GETEVENTS; read(2) returns 5"),
        Expect("read_data", "the buffer holds the bytes", "hello", "read(2)"),
        Expect("read_done", "after reaping: CqHead, CqTail, poll list length", [4, 4, 0],
               FDINFO),
    ]


NOTE = ("SqTail - SqHead: written, not submitted; CqTail - CqHead: completed, not reaped; "
        "the poll list: requests waiting for their file. `fdscope inspect` shows these for "
        "every io_uring fd of a process.")


def unavailable_reason() -> str | None:
    """Why io_uring cannot be used here, or None."""
    from fdscope.uring import available

    return available()


def run(kernel: str | None = None) -> ProbeResult:
    obs = observe()
    reason = obs.ctx.get("unavailable")
    if reason:
        return skipped(NAME, str(reason))
    return judge(NAME, expectations(obs.ctx, kernel or kernel_release()), obs, note=NOTE)
