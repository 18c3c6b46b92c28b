"""Helpers for the server, load and run tests: start a real `fdscope serve` child, talk to it."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fdscope.servers.core import transform
from fdscope.servers.run import stopped_event

START_TIMEOUT = 10.0


class ServerProc:
    """A `python -m fdscope serve MODEL --json --port 0` child; stderr goes to a temp file so a
    flood of diagnostics can never block it."""

    def __init__(self, model: str, *args: str) -> None:
        self.model = model
        skip_unavailable(model)
        fd, self.stderr_path = tempfile.mkstemp(prefix="fdscope-serve-", suffix=".err")
        os.close(fd)
        # O_APPEND: the child's writes never race with our reads over a shared file offset.
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fdscope", "serve", model, "--json", "--port", "0", *args],
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
        line = readline_timeout(self.proc, START_TIMEOUT)
        if not line:
            self.kill()
            raise RuntimeError(f"serve {model} printed no listening line: {self.stderr()}")
        self.listening: dict[str, Any] = json.loads(line)
        self.host: str = self.listening["host"]
        self.port: int = self.listening["port"]
        self.pid: int = self.proc.pid

    @property
    def addr(self) -> tuple[str, int]:
        return self.host, self.port

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, dict[str, Any] | None]:
        """Signal the server; return its exit code and its `stopped` event (or None)."""
        self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return self.proc.returncode, stopped_event(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.stderr_path)


def skip_unavailable(model: str) -> None:
    """Skip the calling test, with the reason, when `model` cannot run on this machine."""
    if model == "io_uring":
        import pytest

        from fdscope.uring import available

        reason = available()
        if reason is not None:
            pytest.skip(f"io_uring unavailable here: {reason}")


def readline_timeout(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
    finally:
        sel.close()
    return proc.stdout.readline()


@contextlib.contextmanager
def server(model: str, *args: str) -> Iterator[ServerProc]:
    srv = ServerProc(model, *args)
    try:
        yield srv
    finally:
        srv.kill()


def exchange(addr: tuple[str, int], payload: bytes, timeout: float = 10.0) -> bytes:
    """Send `payload` while reading the reply concurrently (large payloads cannot be sent first
    and read after); return the reply once it has the payload's length."""
    with socket.create_connection(addr, timeout=timeout) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        sender.start()
        got = recv_exactly(sock, len(payload), timeout)
        sender.join(timeout)
        return got


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    have = 0
    while have < n:
        data = sock.recv(min(1 << 20, n - have))
        if not data:
            break
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER on, timeout 0), as a crashing client's kernel would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def expected(payload: bytes) -> bytes:
    return transform(payload)


def random_payload(n: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def cpu_seconds(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system
