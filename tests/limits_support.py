"""A child process with a known number of fds and a chosen RLIMIT_NOFILE soft limit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

HOLDER = r"""
import json, os, resource, sys
soft, nfds = int(sys.argv[1]), int(sys.argv[2])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
base = os.open(os.devnull, os.O_RDONLY)
held = [base] + [os.dup(base) for _ in range(nfds - 1)]
fds = sorted(int(n) for n in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{n}"))
print(json.dumps({"held": len(held), "fds": fds}), flush=True)
sys.stdin.read()
"""


@contextmanager
def fd_holder(soft: int, nfds: int) -> Iterator[tuple[int, list[int]]]:
    """Yield (pid, fds open in the child) while a child holds `nfds` extra fds."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(soft), str(nfds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
        yield proc.pid, info["fds"]
    finally:
        proc.kill()
        proc.wait()
