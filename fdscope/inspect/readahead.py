"""The read-ahead of `fdscope inspect PID`: the first gather starts before click is imported.

Importing click and the inspect code takes tens of milliseconds on one core; the kernel reads
of a large process (its fd links, net tables, interest lists) take as long again in syscalls.
The console entry point (fdscope.cli.entry) calls start() when the command line reads
`inspect <digits> ...`; it runs fdscope.inspect.gather.process() in a thread, which spends its
time in the C accelerator's batch reads with the GIL released. click still parses the command
line, and the report uses the result only for the pid and proc root it was read for (take());
when anything went wrong there, the report gathers again and reports the error itself.
"""

from __future__ import annotations

import os

from fdscope import speedups
from fdscope.inspect import gather
from fdscope.proc import Proc

# Annotations only: nothing on the way to the thread's start imports typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_pending: dict[str, Any] = {}
# Below this soft RLIMIT_NOFILE the read-ahead is not started.
READAHEAD_MIN_FDS = 64


class Background:
    """fn(*args) in a daemon thread; result() joins it and returns its value or raises its
    error. Only for work that spends its time in syscalls without the GIL."""

    def __init__(self, fn: Any, *args: Any, name: str = "fdscope-readahead") -> None:
        import threading

        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn(*args)
            except BaseException as err:  # noqa: BLE001 - re-raised by result()
                self._error = err

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def inspect_pid(argv: Sequence[str]) -> int | None:
    """The PID of a command line of the form `inspect PID ...` (argv without the program name),
    else None. Only ASCII digits make a pid; click parses the command line itself."""
    if len(argv) < 2 or argv[0] != "inspect":
        return None
    text = argv[1]
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def start(argv: Sequence[str]) -> bool:
    """Start reading ahead for `inspect PID ...`; False when argv is not of that form or there
    is nothing to gain (the pure-Python reads hold the GIL between syscalls, or not Linux)."""
    pid = inspect_pid(argv)
    if pid is None or speedups.backend.name != "c" or not os.path.isdir("/proc/self"):
        return False
    import resource

    # The thread holds a directory fd and a file while the imports open theirs: under a tiny
    # fd limit (`ulimit -n 5`) that would starve the imports, and the scan alone fits.
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < READAHEAD_MIN_FDS:
        return False
    proc = Proc()
    _pending.update(pid=pid, root=proc.root, job=Background(gather.process, proc, pid))
    return True


def pending(pid: int, proc: Proc) -> bool:
    """True when a read-ahead for pid from proc's root was started and not taken yet."""
    return _pending.get("pid") == pid and _pending.get("root") == proc.root and "job" in _pending


def take(pid: int, proc: Proc) -> gather.Raw | None:
    """The read-ahead's result for pid from proc's root, once; None when there is none or it
    failed (the report then gathers again and reports the error)."""
    if not pending(pid, proc):
        return None
    job = _pending.pop("job")
    try:
        return job.result()  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - see the docstring
        return None
