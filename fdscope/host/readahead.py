"""The read-ahead of `fdscope top`: every process's fd table is read while click loads.

Importing click and the scan's code takes a good part of a `top --once` on one core; reading
the fd tables is mostly kernel time in the C accelerator's batch reads, without the GIL. The
console entry point (fdscope.cli.entry) calls start() when the command line is `top` without
a process filter (--pid, --user, --name select few tables: reading all of them ahead would be
wasted work); start() submits a read of each process's table (fdscope.host.tables) to a pool
of reader threads. The first scan takes the reads (take()) and uses one only when the
process's fd count is still the count read (fdscope.host.scan.Scanner); it reads the others
itself.
"""

from __future__ import annotations

import os

from fdscope import speedups
from fdscope.host.tables import READERS, read_table
from fdscope.inspect.readahead import READAHEAD_MIN_FDS
from fdscope.proc import Proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import Future

    from fdscope.host.tables import RawTable

_pending: dict[str, object] = {}
# Options of `top` that select processes (and so few tables).
FILTERS = ("--pid", "--user", "--name")


def wanted(argv: Sequence[str]) -> bool:
    """True for a command line `top ...` without a process filter (argv without the program
    name); click parses the command line itself."""
    return bool(argv) and argv[0] == "top" and not any(
        a.split("=", 1)[0] in FILTERS or a in ("--help", "-h") for a in argv[1:])


def start(argv: Sequence[str]) -> bool:
    """Start reading every fd table for `top`; False when argv is not of that form or there is
    nothing to gain (the pure-Python reads hold the GIL between syscalls, or not Linux)."""
    if not wanted(argv) or speedups.backend.name != "c" or not os.path.isdir("/proc/self"):
        return False
    import resource

    # The readers hold directory fds while the imports open theirs (as inspect's read-ahead).
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < READAHEAD_MIN_FDS:
        return False
    from concurrent.futures import ThreadPoolExecutor

    proc = Proc()
    try:
        names = proc.listdir()
    except Exception:  # noqa: BLE001 - the scan lists /proc itself and reports what fails
        return False
    pool = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="fdscope-readahead")
    me = os.getpid()
    futures = {int(n): pool.submit(read_table, proc, int(n)) for n in names
               if n.isascii() and n.isdigit() and int(n) != me}
    pool.shutdown(wait=False)  # the reads submitted go on; the threads end after them
    _pending.update(root=proc.root, futures=futures)
    return True


def take(proc: Proc) -> dict[int, Future[RawTable | Exception]] | None:
    """The reads started for proc's root (pid -> future), once; None when none were started."""
    if _pending.get("root") != proc.root or "futures" not in _pending:
        return None
    return _pending.pop("futures")  # type: ignore[return-value]
