"""`fdscope inspect PID --watch`: fd counts by type at intervals, for leak hunting."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from fdscope.errors import NoSuchProcess
from fdscope.inspect import fds, gather
from fdscope.parse.task import parse_stat
from fdscope.proc import Proc


def count_types(proc: Proc, pid: int) -> dict[str, int]:
    """Open fds of pid by type (the types `inspect` gives them), most first."""
    fd_list, links, _gone = gather.fd_links(proc, pid)
    paths = [fd for fd, link in zip(fd_list, links, strict=True) if link[:1] == "/"]
    table = fds.classify(fd_list, links, gather.stat_fds(proc, pid, paths))
    counts = Counter(table.types)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def iter_watch(pid: int, interval: float, *, proc: Proc | None = None,
               count: int | None = None,
               sleep: Callable[[float], Any] = time.sleep) -> Iterator[dict[str, Any]]:
    """Yield fd counts by type every `interval` seconds (`count` samples, or forever).

    Each sample: t (seconds since start), open_fds, by_type, delta (since the previous sample,
    by type), delta_total, growth_per_min (open fds per minute, linear over the whole watch)."""
    proc = proc or Proc()
    first: tuple[float, int] | None = None
    prev: dict[str, int] | None = None
    n = 0
    while count is None or n < count:
        if n:
            sleep(interval)
        t = time.monotonic()
        task = parse_stat(proc.read_text(pid, "stat", pid=pid))
        if task.state in ("Z", "X"):
            # A zombie's fd table is empty: counting it would show a leak "fixed" by exiting.
            raise NoSuchProcess(pid, f"process {pid} exited (a zombie its parent {task.ppid} "
                                "has not reaped): nothing left to watch")
        by_type = count_types(proc, pid)
        total = sum(by_type.values())
        if first is None:
            first = (t, total)
        elapsed = t - first[0]
        delta = {k: by_type.get(k, 0) - prev.get(k, 0)
                 for k in sorted(set(by_type) | set(prev)) if by_type.get(k, 0) != prev.get(k, 0)} \
            if prev is not None else {}
        growth = round((total - first[1]) * 60.0 / elapsed, 1) if elapsed > 0 else None
        yield {"t": round(elapsed, 3), "open_fds": total, "by_type": by_type, "delta": delta,
               "delta_total": total - sum(prev.values()) if prev is not None else 0,
               "growth_per_min": growth}
        prev = by_type
        n += 1
