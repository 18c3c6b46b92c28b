"""`fdscope inspect PID`: every fd, socket, epoll registration and thread of a live process.

The modules, in the order data flows through them (nothing imports back up):
  gather     every read of /proc (and sock_diag), text in; readahead starts it early
  fds        link text -> each fd's type and inode; fdinfo -> flags and offset
  sockets    /proc/PID/net tables -> each socket's protocol, state, addresses
  epoll      epoll fdinfo -> interest lists and each registration's status
  threads    task files -> what each thread waits in; CPU
  uring      io_uring fdinfo -> rings, their waiters, the io_uring io_model and findings
  model      the report's types and its JSON document (fdscope.inspect/1)
  iomodel    how the process waits for I/O, from its threads
  findings   rules that turn a report into findings
  report     inspect_process(): gather -> the pure stages -> model -> iomodel, findings
  watch      --watch: fd counts by type over time

This package is imported light (the console entry point starts the read-ahead before click):
the names below load their module on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported on the way to the read-ahead
if TYPE_CHECKING:
    from typing import Any

    from fdscope.inspect.model import InspectReport
    from fdscope.inspect.report import inspect_process

__all__ = ["InspectReport", "inspect_process"]


def __getattr__(name: str) -> Any:
    if name == "inspect_process":
        from fdscope.inspect.report import inspect_process

        return inspect_process
    if name == "InspectReport":
        from fdscope.inspect.model import InspectReport

        return InspectReport
    raise AttributeError(f"module 'fdscope.inspect' has no attribute {name!r}")
