"""Fixture processes for `fdscope exporter` with known truth, and helpers to read what it
exports.

Each fixture is a python child (inspect_support.Target) that names itself `fdsx-ROLE` (by
writing its own /proc/self/comm, so each role is its own group), sets up its fds, and prints
one JSON line: its facts, counted by itself from its own /proc/self/fd links (not by fdscope's
classifier). An extra argument `fdsx-group=ROLE` is there for --group-by cmdline-regex.
"""

from __future__ import annotations

import socket
import textwrap
from typing import Any

ROLES = ("holder", "near", "select", "stale", "leaker", "idle")

SCRIPT = textwrap.dedent(
    r"""
    import json, os, resource, select, socket, sys, threading, time
    role = sys.argv[1]
    with open("/proc/self/comm", "w") as f:
        f.write("fdsx-" + role)
    keep = []
    out = {"role": role}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if role == "holder":
        # 2 pipes, a unix socketpair, a TCP listener with one connection (both ends here),
        # an eventfd, an epoll set watching the listener, /dev/null twice
        keep += list(os.pipe()) + list(os.pipe())
        keep += list(socket.socketpair())
        lst = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
        keep += [lst, c, s, os.eventfd(0)]
        ep = select.epoll()
        ep.register(lst.fileno(), select.EPOLLIN)
        keep += [ep, os.open("/dev/null", os.O_RDONLY), os.open("/dev/null", os.O_RDONLY)]
    elif role == "near":
        # soft limit 64, 62 fds open: 97% (FdHeadroomLow: warning at 80%, critical at 95%)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        while len(os.listdir("/proc/self/fd")) - 1 < 62:
            keep.append(os.open("/dev/null", os.O_RDONLY))
        out["soft"] = 64
    elif role == "select":
        # an fd above FD_SETSIZE, and a thread asleep in select() on a low fd
        if soft < 2048:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2048), hard))
        r, w = os.pipe()
        keep.append(os.dup2(r, 1500))
        threading.Thread(target=lambda: select.select([r], [], [], 3600), daemon=True).start()
    elif role == "stale":
        # register fd y, keep its file open with a dup, close y: the registration stays
        ep = select.epoll()
        a, b = socket.socketpair()
        y = a.detach()
        ep.register(y, select.EPOLLIN)
        keep += [ep, b, os.dup(y)]
        os.close(y)
        out["closed"] = y
    elif role == "leaker":
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        def leak():
            while len(keep) < 600:
                keep.extend(os.pipe())
                time.sleep(0.5)
        threading.Thread(target=leak, daemon=True).start()
    kinds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + name)
        except FileNotFoundError:
            continue  # the listing's own fd
        kind = ("socket" if link.startswith("socket:") else "pipe" if link.startswith("pipe:")
                else "epoll" if link == "anon_inode:[eventpoll]"
                else "eventfd" if link == "anon_inode:[eventfd]"
                else "file" if link.startswith("/") else "other")
        kinds[kind] = kinds.get(kind, 0) + 1
    out["kinds"] = kinds
    out["fds"] = sum(kinds.values())
    print(json.dumps(out), flush=True)
    while True:
        time.sleep(3600)
    """
)


def group(role: str) -> str:
    return f"fdsx-{role}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value of an exposition, by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /,
          **labels: str) -> float | None:
    return got.get((metric, frozenset(labels.items())))


def series(got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
           ) -> list[tuple[dict[str, str], float]]:
    return [(dict(lab), v) for (n, lab), v in got.items() if n == name]


def families(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}
