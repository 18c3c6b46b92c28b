"""Threads and CPU from gathered text: what each thread is blocked in, and a CPU figure."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from fdscope.errors import ParseError
from fdscope.inspect.model import Cpu, ThreadInfo
from fdscope.parse.syscall import decode_args, parse_syscall, syscall_name
from fdscope.parse.task import parse_stat

if TYPE_CHECKING:
    from fdscope.inspect.gather import RawThreads, Sample


def parse_threads(raw: RawThreads, arch: str) -> tuple[list[ThreadInfo], list[str]]:
    """ThreadInfo per readable thread, and notes on what could not be read (which make the
    report partial)."""
    notes: list[str] = []
    if raw.error is not None:
        return [], [f"threads unreadable: {raw.error}"]
    out: list[ThreadInfo] = []
    denied = 0
    for tid, stat_text, wchan_text, syscall_text in raw.rows:
        try:
            st = parse_stat(stat_text)
        except ParseError as err:
            notes.append(f"thread {tid}: {err}")
            continue
        wchan = (wchan_text or "").strip()
        syscall: str | None = None
        nr: int | None = None
        args: dict[str, int] = {}
        if syscall_text is None:
            denied += 1
        else:
            try:
                sc = parse_syscall(syscall_text)
            except ParseError as err:
                notes.append(f"thread {tid}: {err}")
            else:
                if sc.running:
                    syscall = "running"
                elif sc.nr is None or sc.nr < 0:
                    syscall = "none"
                else:
                    nr = sc.nr
                    syscall = syscall_name(sc.nr, arch)
                    args = dict(decode_args(syscall, sc.args))
        # fs/proc/base.c proc_pid_wchan prints "0" when running or when the symbol is hidden.
        out.append(ThreadInfo(tid, st.comm, st.state, syscall,
                              wchan if wchan and wchan != "0" else None, args, nr))
    if denied:
        notes.append(
            f"syscall of {denied} thread(s) unreadable: /proc/PID/task/TID/syscall needs "
            "ptrace attach access (same uid and ptrace_scope permitting, or root / "
            "CAP_SYS_PTRACE); wchan shown instead")
    return out, notes


def lifetime_cpu(stat_text: str, uptime_text: str | None, hz: int) -> Cpu | None:
    """Average CPU since the process started, from its stat and /proc/uptime."""
    try:
        st = parse_stat(stat_text)
        uptime = float((uptime_text or "").split()[0])
    except (ParseError, ValueError, IndexError):
        return None
    age = uptime - st.starttime / hz
    if age <= 0:
        return None
    pct = 100.0 * (st.utime + st.stime) / hz / age
    return Cpu(round(pct, 1), round(age, 1), "lifetime")


def apply_sample(threads: list[ThreadInfo], sample: Sample, hz: int, arch: str,
                 wait_calls: frozenset[str]) -> tuple[list[ThreadInfo], Cpu]:
    """The threads with their CPU share and the blocking calls each was seen in during the
    sample (a zero-timeout poll is no wait), and the process's CPU over the sample."""
    before, after = parse_stat(sample.before), parse_stat(sample.after)
    starts, ends = _ticks(sample.starts), _ticks(sample.ends)
    elapsed = sample.elapsed
    waits: dict[int, Counter[str]] = {t.tid: Counter() for t in threads}
    last_args: dict[tuple[int, str], dict[str, int]] = {}
    for snapshot in sample.snapshots:
        for tid, seen in waits.items():
            text = snapshot.get(tid)
            if text is None:
                continue
            try:
                sc = parse_syscall(text)
            except ParseError:
                continue
            if sc.running or sc.nr is None or sc.nr < 0:
                continue
            name = syscall_name(sc.nr, arch)
            if name not in wait_calls:
                continue
            args = decode_args(name, sc.args)
            # A zero timeout polls without blocking (epoll_wait(2), poll(2)): not a wait.
            if args.get("timeout") != 0:
                seen[name] += 1
                last_args[(tid, name)] = dict(args)
    per_thread = {tid: round(100.0 * (ends[tid] - starts[tid]) / hz / elapsed, 1)
                  for tid in starts if tid in ends}
    vol_starts, vol_ends = _voluntary(sample.status_starts), _voluntary(sample.status_ends)
    blocked = {tid: vol_ends[tid] - vol_starts[tid] for tid in vol_starts if tid in vol_ends}
    out = []
    for t in threads:
        seen = waits.get(t.tid)
        top = seen.most_common(1)[0][0] if seen else None
        out.append(t._replace(cpu_percent=per_thread.get(t.tid),
                              waits=dict(seen.most_common()) if seen else None,
                              wait_args=last_args.get((t.tid, top)) if top else None,
                              blocked=blocked.get(t.tid)))
    ticks = (after.utime + after.stime) - (before.utime + before.stime)
    io_start, io_end = _io_bytes(sample.io_before), _io_bytes(sample.io_after)
    moved = io_end - io_start if io_start is not None and io_end is not None else None
    return out, Cpu(round(100.0 * ticks / hz / elapsed, 1), round(elapsed, 3), "sample",
                    len(sample.snapshots), moved)


def _io_bytes(text: str | None) -> int | None:
    """rchar + wchar of /proc/PID/io: bytes passed through read/write-like syscalls, sockets
    included (fs/proc/base.c do_io_accounting; a read that fails with EAGAIN adds nothing)."""
    if text is None:
        return None
    total = 0
    found = 0
    for line in text.split("\n"):
        key, _, value = line.partition(":")
        if key in ("rchar", "wchar"):
            value = value.strip()
            if not (value.isascii() and value.isdigit()):
                return None
            total += int(value)
            found += 1
    return total if found == 2 else None


def _voluntary(statuses: dict[int, str]) -> dict[int, int]:
    """tid -> voluntary_ctxt_switches from /proc/PID/task/TID/status (kernel/fork.c counts a
    switch each time the task sleeps; fs/proc/array.c task_context_switch_counts prints it)."""
    out: dict[int, int] = {}
    for tid, text in statuses.items():
        for line in text.split("\n"):
            if line.startswith("voluntary_ctxt_switches:"):
                value = line.split(":", 1)[1].strip()
                if value.isascii() and value.isdigit():
                    out[tid] = int(value)
                break
    return out


def _ticks(stats: dict[int, str]) -> dict[int, int]:
    out: dict[int, int] = {}
    for tid, text in stats.items():
        try:
            st = parse_stat(text)
        except ParseError:
            continue
        out[tid] = st.utime + st.stime
    return out
