"""A small busy host with known truth for `fdscope top`: one child process per fault, each
printing one JSON line (its facts) once ready, then blocking (inspect_support.Target)."""

from __future__ import annotations

import textwrap

ROLES = ("near_limit", "leaker", "select", "stale_epoll", "close_wait", "backlog_full", "idle")

SCRIPT = textwrap.dedent(
    r"""
    import json, os, resource, select, socket, sys, threading, time
    role = sys.argv[1]
    out = {"role": role}
    keep = []
    if role == "near_limit":
        # soft 100, 96 fds open: 96% of the soft limit (crit at >= 95%)
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        while len(os.listdir("/proc/self/fd")) - 1 < 96:
            keep.append(os.open("/dev/null", os.O_RDONLY))
        out["soft"] = 100
    elif role == "leaker":
        def leak():
            while True:
                keep.extend(os.pipe())
                time.sleep(0.05)
        threading.Thread(target=leak, daemon=True).start()
    elif role == "select":
        # an fd above FD_SETSIZE, and a thread asleep in select() on a low fd
        r, w = os.pipe()
        keep.append(os.dup2(r, 1500))
        out["high"] = 1500
        t = threading.Thread(target=lambda: select.select([r], [], [], 3600), daemon=True)
        t.start()
    elif role == "stale_epoll":
        # register fd y, keep its file open with a dup, close y: the registration stays
        ep = select.epoll()
        a, b = socket.socketpair()
        y = a.detach()
        ep.register(y, select.EPOLLIN)
        keep += [ep, b, os.dup(y)]
        os.close(y)
        out["closed"] = y
    elif role == "close_wait":
        lst = socket.create_server(("127.0.0.1", 0))
        for _ in range(6):
            c = socket.create_connection(lst.getsockname()); s, _ = lst.accept(); c.close()
            keep.append(s)
        keep.append(lst)
        out["fds"] = [s.fileno() for s in keep[:-1]]
    elif role == "backlog_full":
        full = socket.create_server(("127.0.0.1", 0), backlog=1)
        for _ in range(4):
            c = socket.socket(); c.setblocking(False); c.connect_ex(full.getsockname()); keep.append(c)
        keep.append(full)
        time.sleep(0.3)
        out["fd"] = full.fileno()
    print(json.dumps(out), flush=True)
    while True:
        time.sleep(3600)
    """
)
