"""`fdscope inspect` names each running reference server's I/O model (io_model.kind)."""

from __future__ import annotations

import socket
import time

import pytest

from tests.servers_support import recv_exactly, server

inspect = pytest.importorskip("fdscope.inspect", reason="fdscope.inspect not available")

EXPECTED_KIND = {
    "blocking": "blocking",
    "threads": "threads",
    "nonblocking": "busy_polling",
    "select": "select",
    "poll": "poll",
    "epoll": "epoll",
    "epoll-et": "epoll",
    "selectors": "epoll",
    "asyncio": "epoll",
    "asyncio-uvloop": "epoll",
    "sigio": "signal_driven",
    "io_uring": "io_uring",
}
EPOLLET = 1 << 31


def _snapshot(pid: int, model: str) -> dict:
    """A waiting server is caught waiting within a few snapshots; a spinning one needs a CPU
    sample, which inspect takes by itself when no thread waits (sample=None)."""
    doc: dict = {}
    for _ in range(10):
        doc = inspect.inspect_process(pid, sample=None if model == "nonblocking" else 0).to_json()
        if doc["io_model"]["kind"] == EXPECTED_KIND[model]:
            return doc
        time.sleep(0.05)
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("model", list(EXPECTED_KIND))
def test_inspect_classifies_model(model: str) -> None:
    with server(model) as srv:
        clients = [socket.create_connection(srv.addr, timeout=5) for _ in range(3)]
        try:
            for c in clients[: 1 if model == "blocking" else 3]:
                c.sendall(b"ping")
                assert recv_exactly(c, 4) == b"PING"
            time.sleep(0.1)
            doc = _snapshot(srv.pid, model)
        finally:
            for c in clients:
                c.close()
    kind = doc["io_model"]["kind"]
    assert kind == EXPECTED_KIND[model], doc["io_model"]
    sockets = doc["summary"]["socket_states"]
    assert sockets.get("LISTEN") == 1
    assert sockets.get("ESTABLISHED", 0) >= (1 if model == "blocking" else 3)
    if kind == "epoll":
        regs = [r for s in doc["epoll"] for r in s["registrations"]]
        assert len(regs) >= 4  # the listener and 3 clients
        edge = [r for r in regs if r["mask"] & EPOLLET]
        assert (len(edge) == len(regs)) if model == "epoll-et" else not edge
        assert all(r["status"] == "ok" for r in regs)
    if model == "threads":
        assert len(doc["threads"]) >= 4  # the acceptor and one per client
    if model == "io_uring":
        (ring,) = doc["io_uring"]
        from fdscope.servers.io_uring import ACCEPT_DEPTH

        # The accepts and one recv per client wait in the kernel for their sockets.
        ops = sorted(p["opcode"] for p in ring["poll_list"])
        assert ops == ["ACCEPT"] * ACCEPT_DEPTH + ["RECV"] * 3, ring["poll_list"]
        assert ring["sq"]["pending"] == 0 and ring["waiters"]
    if model == "sigio":
        flagged = [f for f in doc["fds"] if "O_ASYNC" in (f["flags"] or [])]
        assert len(flagged) == 4
