"""io_uring in an inspect report: each ring's fdinfo decoded, who waits on it, the io_model line
and the findings. Pure: text and threads in, rings, an IoModel and findings out.

The kernel's own threads of a process that uses io_uring are listed in /proc/PID/task like any
thread (create_io_thread, kernel/fork.c): `iou-sqp-PID` polls a ring's SQ (IORING_SETUP_SQPOLL,
io_uring/sqpoll.c io_sq_thread) and `iou-wrk-PID` are io-wq workers that run requests which
cannot complete without blocking (io_uring/io-wq.c io_wq_worker). Their /proc syscall file shows
the syscall that created them (io_uring_setup, io_uring_enter) although they never return to
user space, so they are counted apart and never read as threads blocked in a call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fdscope.inspect.model import InspectReport, IoModel, ThreadInfo
from fdscope.model import Finding

# The ring parser (fdscope.parse.uring) loads only for a process that has a ring: most have none.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from fdscope.parse.uring import UringInfo

ENTER = "io_uring_enter"
SQPOLL_PREFIX = "iou-sqp-"
WORKER_PREFIX = "iou-wrk-"
# A fixed-file table at least this full is reported (info), when it has at least FILES_MIN
# slots: a program that registers exactly the files it uses has a full table by design.
FILES_NEAR_RATIO = 0.9
FILES_MIN = 16


class UringRing(NamedTuple):
    """One io_uring fd: its decoded fdinfo and the threads waiting in io_uring_enter on it."""

    fd: int
    info: UringInfo
    waiters: tuple[int, ...] = ()
    min_complete: int | None = None  # the largest min_complete among the waiters

    def to_json(self) -> dict[str, Any]:
        from fdscope.parse.uring import opcode_name

        u = self.info
        return {
            "fd": self.fd,
            "form": u.form,
            "sq": {"entries": u.sq_entries, "mask": u.sq_mask, "head": u.sq_head,
                   "tail": u.sq_tail, "cached_head": u.cached_sq_head, "pending": u.sq_pending},
            "cq": {"entries": u.cq_entries, "mask": u.cq_mask, "head": u.cq_head,
                   "tail": u.cq_tail, "cached_tail": u.cached_cq_tail, "pending": u.cq_pending},
            "sqes": [{"index": e.index, "opcode": e.opcode, "fd": e.fd, "flags": e.flags,
                      "off": e.off, "addr": e.addr, "rw_flags": e.rw_flags,
                      "buf_index": e.buf_index, "user_data": e.user_data,
                      "extra": dict(e.extra)} for e in u.sqes],
            "cqes": [{"index": e.index, "user_data": e.user_data, "res": e.res,
                      "flags": e.flags, "extra": dict(e.extra)} for e in u.cqes],
            "sq_thread": u.sq_thread,
            "sq_thread_cpu": u.sq_thread_cpu,
            "sq_total_time_us": u.sq_total_time,
            "sq_work_time_us": u.sq_work_time,
            "user_files": u.user_files,
            "files": [{"index": i, "name": name} for i, name in u.files],
            "user_bufs": u.user_bufs,
            "bufs": [{"index": i, "addr": addr, "len": n} for i, addr, n in u.bufs],
            "personalities": list(u.personalities),
            "poll_list": None if u.poll_list is None else [
                {"op": p.opcode, "opcode": opcode_name(p.opcode), "task_works": p.task_works}
                for p in u.poll_list],
            "cq_overflow_list": None if u.cq_overflow_list is None else [
                {"user_data": o.user_data, "res": o.res, "flags": o.flags}
                for o in u.cq_overflow_list],
            "napi": u.napi,
            "napi_fields": dict(u.napi_fields),
            "waiters": list(self.waiters),
            "min_complete": self.min_complete,
            "unknown": list(u.unknown),
        }


def is_io_thread(t: ThreadInfo) -> bool:
    """An io_uring kernel thread of the process (SQ poller or io-wq worker)."""
    return t.name.startswith((SQPOLL_PREFIX, WORKER_PREFIX))


def io_threads(threads: list[ThreadInfo]) -> tuple[int, int]:
    """(SQ poll threads, io-wq workers) among the process's threads."""
    sqp = sum(1 for t in threads if t.name.startswith(SQPOLL_PREFIX))
    wrk = sum(1 for t in threads if t.name.startswith(WORKER_PREFIX))
    return sqp, wrk


def _entering(threads: list[ThreadInfo]) -> list[ThreadInfo]:
    """User threads asleep in io_uring_enter (waiting for completions): caught in it, seen in
    it during a CPU sample, or (syscall unreadable) sleeping in io_cqring_wait."""
    return [t for t in threads if not is_io_thread(t) and (
        (t.state in ("S", "D", "I") and (t.syscall == ENTER or (
            t.syscall is None and (t.wchan or "").startswith("io_cqring_wait"))))
        or (t.waits is not None and ENTER in t.waits))]


def _args(t: ThreadInfo) -> dict[str, int]:
    """The io_uring_enter arguments: as caught, or as last seen during a CPU sample."""
    if t.syscall == ENTER:
        return t.args
    if t.waits and next(iter(t.waits)) == ENTER:
        return t.wait_args or {}
    return {}


def rings(texts: dict[int, str], threads: list[ThreadInfo]) -> list[UringRing]:
    """The rings of the io_uring fds whose fdinfo `texts` holds, with their waiters."""
    from fdscope.parse.uring import parse_uring

    waiting = _entering(threads)
    out = []
    for fd in sorted(texts):
        on = [t for t in waiting if _args(t).get("fd") == fd]
        mins = [_args(t)["min_complete"] for t in on if "min_complete" in _args(t)]
        out.append(UringRing(fd, parse_uring(texts[fd]), tuple(t.tid for t in on),
                             max(mins) if mins else None))
    return out


def io_model(rep: InspectReport, rings_: list[UringRing]) -> IoModel | None:
    """The io_uring kind when a user thread waits in io_uring_enter, else None.

    Rendered "io_uring: 1 thread in io_uring_enter (min_complete=1) on fd 7, 3 SQEs pending"."""
    waiting = _entering(rep.threads)
    if not waiting:
        return None
    n = len(waiting)
    fds = sorted({_args(t)["fd"] for t in waiting if "fd" in _args(t)})
    mins = sorted({_args(t)["min_complete"] for t in waiting if "min_complete" in _args(t)})
    text = f"{n} thread{'s' if n != 1 else ''} in {ENTER}"
    if mins:
        text += f" (min_complete={','.join(map(str, mins))})"
    if fds:
        text += f" on fd{'s' if len(fds) > 1 else ''} {', '.join(map(str, fds))}"
    watched = [r for r in rings_ if not fds or r.fd in fds]
    sq = [r.info.sq_pending for r in watched if r.info.sq_pending is not None]
    polls = [len(r.info.poll_list) for r in watched if r.info.poll_list is not None]
    if sq:
        text += f", {sum(sq)} SQE{'s' if sum(sq) != 1 else ''} pending"
    if polls:
        text += f", {sum(polls)} request{'s' if sum(polls) != 1 else ''} waiting for readiness"
    sqp, wrk = io_threads(rep.threads)
    if sqp or wrk:
        text += f"; kernel threads: {sqp} SQ poll, {wrk} io-wq worker{'s' if wrk != 1 else ''}"
    return IoModel("io_uring", text)


def findings(rep: InspectReport, rings_: list[UringRing]) -> list[Finding]:
    """CQ overflow, SQEs that nothing submits (warn when the SQ ring is full), a fixed-file
    table near its size, a ring served by another process's SQ poll thread (levels in
    docs/io_uring.md)."""
    out: list[Finding] = []
    tids = {t.tid for t in rep.threads}
    on_cpu = any(t.state == "R" or t.syscall == "running" for t in rep.threads
                 if not is_io_thread(t))
    for r in rings_:
        u = r.info
        over = u.cq_overflow_list or ()
        if over:
            full = (u.cq_pending is not None and u.cq_entries is not None
                    and u.cq_pending >= u.cq_entries)
            # io_uring/io_uring.c io_cqring_event_overflow: with IORING_FEAT_NODROP (5.5) a
            # completion that finds the CQ ring full is kept on this list, in kernel memory,
            # until the program reaps the ring and enters again; without that memory it is
            # dropped and counted in the ring's overflow field.
            out.append(Finding(
                "warn" if full else "info", "uring_cq_overflow",
                f"io_uring fd {r.fd}: {len(over)} completion(s) did not fit the CQ ring "
                f"({u.cq_pending}/{u.cq_entries} unreaped) and wait on the kernel's overflow "
                "list; " + ("the program is not reaping its completions: the backlog grows in "
                            "kernel memory, and completions are dropped when it cannot grow"
                            if full else "the program is reaping now (the ring has room): a "
                            "burst larger than the CQ ring"), (r.fd,)))
        pending, size = u.sq_pending, u.sq_entries
        if pending and size and not r.waiters and not u.sqpoll and not on_cpu:
            # Without an SQ poll thread the kernel consumes SQEs only in io_uring_enter
            # (io_uring/io_uring.c io_submit_sqes): SQEs written while no thread enters or runs
            # wait for nobody. A ring that relied on an SQ poll thread whose creator exited
            # looks the same (SqThread -1; io_uring_enter fails with EOWNERDEAD).
            if pending >= size:
                out.append(Finding(
                    "warn", "uring_sq_full_no_waiter",
                    f"io_uring fd {r.fd}: SQ ring full ({pending}/{size} SQEs written, none "
                    "consumed), no SQ poll thread, and no thread is in io_uring_enter or on "
                    "CPU: nothing will submit them, and the program cannot queue more",
                    (r.fd,)))
            else:
                out.append(Finding(
                    "info", "uring_sq_unsubmitted",
                    f"io_uring fd {r.fd}: {pending} SQE(s) written and not submitted, no SQ "
                    "poll thread, no thread in io_uring_enter or on CPU: they wait for the "
                    "program's next io_uring_enter (a ring whose SQ poll thread went with its "
                    "creating process looks the same)", (r.fd,)))
        if u.user_files and u.user_files >= FILES_MIN and u.files:
            # Older kernels list empty slots too, as "<none>" (io_uring/fdinfo.c).
            used = sum(1 for _, name in u.files if name != "<none>")
            if used >= u.user_files * FILES_NEAR_RATIO:
                out.append(Finding(
                    "info", "uring_files_near_full",
                    f"io_uring fd {r.fd}: fixed-file table {used}/{u.user_files} slots in use; "
                    "when it is full, direct-descriptor allocation (IORING_FILE_INDEX_ALLOC) "
                    "fails with ENFILE", (r.fd,)))
        if u.sqpoll and u.sq_thread not in tids:
            # The SQ poll thread is a thread of the process that created the ring
            # (io_uring/sqpoll.c io_sq_offload_create): this one got the fd by fork() or
            # SCM_RIGHTS. When the creator exits, its SQ thread goes and io_uring_enter on
            # this ring fails with EOWNERDEAD.
            out.append(Finding(
                "info", "uring_foreign_submitter",
                f"io_uring fd {r.fd}: its SQ poll thread {u.sq_thread} belongs to another "
                "process (the ring came by fork() or SCM_RIGHTS); when that process exits, "
                "submissions to this ring fail with EOWNERDEAD", (r.fd,)))
    return out
