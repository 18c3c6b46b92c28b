"""How a process waits for I/O, derived from its threads' blocked syscalls, its fds and its CPU.

Kinds (a public contract, see README, "fdscope inspect" section): epoll, io_uring, select, poll, threads,
busy_polling, blocking, signal_driven, idle, unknown.
"""

from __future__ import annotations

from collections import Counter

from fdscope.inspect import uring
from fdscope.inspect.model import InspectReport, IoModel, ThreadInfo
from fdscope.parse.events import EPOLLET

KINDS = ("epoll", "io_uring", "select", "poll", "threads", "busy_polling", "blocking", "signal_driven",
         "idle", "cpu_bound", "unknown")

EPOLL_CALLS = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2"})
SELECT_CALLS = frozenset({"select", "pselect6", "_newselect"})
POLL_CALLS = frozenset({"poll", "ppoll"})
IO_CALLS = frozenset({"read", "readv", "pread64", "recvfrom", "recvmsg", "recvmmsg", "accept",
                      "accept4", "connect", "write", "writev", "sendto", "sendmsg", "sendmmsg",
                      "sendfile", "splice"})
SIGNAL_CALLS = frozenset({"rt_sigsuspend", "pause", "rt_sigtimedwait", "sigsuspend"})
SLEEP_CALLS = frozenset({"nanosleep", "clock_nanosleep", "futex", "wait4", "waitid"})
# io_uring_enter(2) with min_complete > 0 waits for completions: an I/O wait (fdscope.inspect.uring).
URING_CALLS = frozenset({"io_uring_enter"})
# Kernel functions /proc/PID/task/TID/wchan shows for the same waits (used when syscall is
# unreadable; names from fs/eventpoll.c, fs/select.c, net/, kernel/futex/, kernel/time/).
WCHAN_CALLS = {
    "do_epoll_wait": "epoll_wait", "ep_poll": "epoll_wait",
    "do_select": "select", "core_sys_select": "select", "kern_select": "select",
    "do_sys_poll": "poll", "do_poll": "poll",
    "inet_csk_accept": "accept", "inet_csk_wait_for_connect": "accept",
    "unix_stream_read_generic": "recvfrom", "sk_wait_data": "recvfrom",
    "wait_woken": "recvfrom", "__skb_wait_for_more_packets": "recvfrom",
    "skb_wait_for_more_packets": "recvfrom", "unix_wait_for_peer": "sendto",
    "sk_stream_wait_memory": "sendto", "pipe_read": "read", "pipe_write": "write",
    "futex_wait_queue": "futex", "futex_wait_queue_me": "futex", "futex_wait": "futex",
    "hrtimer_nanosleep": "clock_nanosleep", "do_nanosleep": "clock_nanosleep",
    "do_wait": "wait4", "sigsuspend": "rt_sigsuspend", "sys_pause": "pause",
    "__x64_sys_pause": "pause", "do_sigtimedwait": "rt_sigtimedwait",
    "io_cqring_wait": "io_uring_enter",
}
WAIT_CALLS = (EPOLL_CALLS | SELECT_CALLS | POLL_CALLS | IO_CALLS | SIGNAL_CALLS | SLEEP_CALLS
              | URING_CALLS)
BUSY_PERCENT = 50.0
# Bytes a process may move during a CPU sample and still be an idle poll (a heartbeat).
IDLE_IO_BYTES = 4096
# A thread that never blocked during the sample and still got this much CPU was runnable
# throughout (sharing a busy core), not waiting.
RUNNABLE_PERCENT = 10.0


def effective_call(t: ThreadInfo) -> str | None:
    """The syscall a thread is in, by name; from wchan when the syscall file was unreadable.

    A thread caught running (or in a non-blocking call) that a CPU sample saw blocking is
    described by the blocking call it was seen in most."""
    if t.waits and not _snapshot_waits(t):
        return next(iter(t.waits))
    if t.syscall not in (None, "none"):
        return t.syscall
    if t.wchan:
        # "poll_schedule_timeout.constprop.0": compiler clones carry a suffix.
        return WCHAN_CALLS.get(t.wchan.split(".", 1)[0])
    return None


def call_args(t: ThreadInfo) -> dict[str, int]:
    """Arguments of the call effective_call() names."""
    if t.waits and not _snapshot_waits(t):
        return t.wait_args or {}
    return t.args


def _snapshot_waits(t: ThreadInfo) -> bool:
    return (t.state in ("S", "D", "I") and t.syscall in WAIT_CALLS
            and t.args.get("timeout") != 0)


def is_waiting(t: ThreadInfo) -> bool:
    """Asleep in the kernel in a call that waits (a zero poll timeout is not a wait), or seen so
    during a CPU sample."""
    if t.waits:
        return True
    call = effective_call(t)
    if t.state not in ("S", "D", "I") or call not in WAIT_CALLS:
        return False
    return t.args.get("timeout") != 0


def needs_cpu_sample(rep: InspectReport) -> bool:
    """True when a thread is on CPU and none is waiting: only a CPU sample tells spin from burst."""
    threads = [t for t in rep.threads if not uring.is_io_thread(t)]
    if not threads or any(is_waiting(t) for t in threads):
        return False
    return any(t.syscall == "running" or t.state == "R" for t in threads)


def _rate(per_s: float) -> str:
    for unit, size in (("MB/s", 1e6), ("KB/s", 1e3)):
        if per_s >= size:
            return f"{per_s / size:.1f} {unit}"
    return f"{per_s:.0f} B/s"


def _hot(t: ThreadInfo) -> bool:
    """On CPU for most of the sample, or runnable all of it: a thread that never went to sleep
    (no voluntary context switch) yet ran a fair share was preempted, not waiting, which is how
    a spinning thread looks on a machine whose cores are busy with other work."""
    used = t.cpu_percent or 0
    return used >= BUSY_PERCENT or (t.blocked == 0 and used >= RUNNABLE_PERCENT)


def classify(rep: InspectReport) -> IoModel:
    # io_uring's kernel threads (iou-sqp-*, iou-wrk-*) are no user thread waiting in a call.
    threads = [t for t in rep.threads if not uring.is_io_thread(t)]
    if not threads:
        return IoModel("unknown", "no thread readable")
    calls = {t.tid: effective_call(t) for t in threads}
    waiting = [t for t in threads if is_waiting(t)]
    io_waiting = [t for t in waiting if calls[t.tid] not in SLEEP_CALLS]
    cpu = rep.cpu
    if cpu is not None and cpu.source == "sample" and not io_waiting:
        busy = [t for t in threads if _hot(t)]
        if busy or cpu.percent >= BUSY_PERCENT:
            # Busy polling: a hot thread that never slept during the sample, in a process
            # that polls I/O fds (non-blocking sockets or pipes, or epoll). A thread at 100%
            # CPU without such fds computes (e.g. sha256sum /dev/zero); one that slept now and
            # then waits for I/O between bursts of work.
            spinning = [t for t in busy if t.blocked == 0]
            polls = _polls_io(rep)
            # A loop saturated with work never sleeps either, but it moves bytes; a busy poll
            # gets EAGAIN and moves none.
            moved = cpu.io_bytes
            if spinning and polls and moved is not None and moved > IDLE_IO_BYTES:
                rate = moved / max(cpu.window, 1e-3)
                what = "epoll event loop" if rep.epoll else "event loop"
                return IoModel("epoll" if rep.epoll else "unknown",
                               f"{what}, saturated: {cpu.percent:g}% CPU over {cpu.window:g} s, "
                               f"never waited, moving {_rate(rate)} through its fds (work, "
                               "not an idle poll)")
            if spinning and polls:
                n = len(spinning)
                return IoModel("busy_polling", f"busy polling: {cpu.percent:g}% CPU over "
                               f"{cpu.window:g} s ({n} thread{'s' if n != 1 else ''} never "
                               "blocked), no blocking wait, non-blocking I/O fds")
            n = len(busy) or 1
            if polls:
                slept = sum(t.blocked or 0 for t in busy)
                return IoModel("unknown", f"busy: {cpu.percent:g}% CPU over {cpu.window:g} s; "
                               f"its busy thread{'s' if n != 1 else ''} blocked {slept} time(s) "
                               "but the sample caught no wait: a loaded loop, or one that "
                               "sleeps between polls")
            return IoModel("cpu_bound", f"computing: {cpu.percent:g}% CPU over {cpu.window:g} s "
                           f"({n} thread{'s' if n != 1 else ''} on CPU), no thread waits for "
                           "I/O")

    def group(names: frozenset[str]) -> list[ThreadInfo]:
        return [t for t in waiting if calls[t.tid] in names]

    epoll_t, select_t, poll_t = group(EPOLL_CALLS), group(SELECT_CALLS), group(POLL_CALLS)
    io_t, sig_t = group(IO_CALLS), group(SIGNAL_CALLS)
    extras = _extras(epoll_t, select_t, poll_t, io_t)
    if epoll_t:
        return IoModel("epoll", _epoll_summary(rep, epoll_t) + extras("epoll") + _busy(cpu))
    ring = uring.io_model(rep, rep.io_uring)
    if ring is not None:
        return ring._replace(summary=ring.summary + _busy(cpu))
    if select_t:
        who = _threads_in(select_t, calls)
        return IoModel("select", f"select() loop{_nfds(select_t)}: {who}" + extras("select")
                       + _busy(cpu))
    if poll_t:
        who = _threads_in(poll_t, calls)
        return IoModel("poll", f"poll() loop{_nfds(poll_t)}: {who}" + extras("poll")
                       + _busy(cpu))
    async_fds = [e.fd for e in rep.fds_with_flags() if "O_ASYNC" in e.flags]
    if async_fds and (sig_t or not io_t):
        who = _threads_in(sig_t, calls) if sig_t else "no thread blocked in I/O"
        return IoModel("signal_driven", f"signal-driven I/O: {len(async_fds)} fd(s) with O_ASYNC "
                       f"({', '.join(map(str, async_fds[:8]))}), {who}")
    if len(io_t) >= 2:
        return IoModel("threads", f"thread per connection: {_threads_in(io_t, calls)}")
    lock_t = [t for t in waiting if calls[t.tid] == "futex"]
    on_cpu = [t for t in threads if t.syscall == "running" or t.state == "R"]
    if len(io_t) == 1 and (lock_t or on_cpu) and len(rep.fds_in_state("ESTABLISHED")) >= 2:
        # Under load the other threads of a thread-per-connection server are caught working or
        # queued on a lock (the GIL: a futex), not in recv: one thread in recv and others
        # busy, with several connections held, is still thread-per-connection (a blocking
        # single-connection server holds one connection and has no other thread at work).
        busy = f", {len(on_cpu)} on CPU" if on_cpu else ""
        lock = " (waiting for a lock, e.g. the GIL)" if lock_t else ""
        return IoModel("threads", f"thread per connection: {_threads_in(io_t + lock_t, calls)}"
                       f"{busy}{lock}")
    if len(io_t) == 1:
        t = io_t[0]
        a = call_args(t)
        where = f" on fd {a['fd']}" if "fd" in a else ""
        return IoModel("blocking", f"blocking, single connection: 1 thread in {calls[t.tid]}{where}")
    if waiting and len(waiting) == len(threads):
        return IoModel("idle", f"{_threads_in(waiting, calls)}; no thread waits for I/O")
    running = [t for t in threads if t.syscall == "running" or t.state == "R"]
    if running:
        return IoModel("unknown", f"{len(running)} thread(s) on CPU, none waiting; "
                       "use --sample SECONDS to measure CPU")
    if all(calls[t.tid] is None for t in threads):
        return IoModel("unknown", "syscalls unreadable and wchan not recognised")
    return IoModel("unknown", _threads_in(threads, calls))


def _polls_io(rep: InspectReport) -> bool:
    """The process holds fds a loop polls: an epoll fd, or a non-blocking socket or pipe."""
    return any(e.type == "epoll" or (e.type in ("socket", "pipe") and e.flags is not None
                                     and "O_NONBLOCK" in e.flags) for e in rep.fds)


def _nfds(threads: list[ThreadInfo]) -> str:
    """", nfds=N" from the threads caught in the call; a thread known only from a CPU sample's
    snapshots has no arguments to show."""
    known = [call_args(t)["nfds"] for t in threads if "nfds" in call_args(t)]
    return f", nfds={max(known)}" if known else ""


def _busy(cpu: object) -> str:
    if cpu is not None and cpu.source == "sample" and cpu.percent >= BUSY_PERCENT:  # type: ignore[attr-defined]
        return f"; busy: {cpu.percent:g}% CPU over {cpu.window:g} s"  # type: ignore[attr-defined]
    return ""


def _threads_in(threads: list[ThreadInfo], calls: dict[int, str | None]) -> str:
    counts = Counter(calls[t.tid] or "?" for t in threads)
    parts = []
    for i, (call, n) in enumerate(counts.most_common()):
        if i == 0:
            parts.append(f"{n} thread{'s' if n != 1 else ''} {'blocked ' if call in IO_CALLS else ''}in {call}")
        else:
            parts.append(f"{n} in {call}")
    return ", ".join(parts)


def _epoll_summary(rep: InspectReport, epoll_t: list[ThreadInfo]) -> str:
    epfds = sorted({call_args(t)["epfd"] for t in epoll_t if "epfd" in call_args(t)})
    sets = [s for s in rep.epoll if not epfds or s.epfd in epfds]
    targets = sum(len(s.registrations) for s in sets)
    et = sum(1 for s in sets for r in s.registrations if r.mask & EPOLLET)
    n = len(epoll_t)
    call = Counter(effective_call(t) for t in epoll_t).most_common(1)[0][0]
    on = ""
    if epfds:
        on = f" on fd{'s' if len(epfds) > 1 else ''} {', '.join(map(str, epfds))}"
    return (f"epoll event loop: {n} thread{'s' if n != 1 else ''} in {call}{on} "
            f"({targets} target{'s' if targets != 1 else ''}, {et} edge-triggered)")


def _extras(epoll_t: list, select_t: list, poll_t: list, io_t: list):  # type: ignore[type-arg]
    def extra(kind: str) -> str:
        bits = []
        if kind != "select" and select_t:
            bits.append(f"{len(select_t)} in select")
        if kind not in ("select", "poll") and poll_t:
            bits.append(f"{len(poll_t)} in poll")
        if io_t:
            bits.append(f"{len(io_t)} blocked in socket/pipe I/O")
        return f"; also {', '.join(bits)}" if bits else ""

    return extra
