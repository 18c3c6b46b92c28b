"""One test class run against every reference server model (cf. CPython's selector tests), plus
the model-specific promises: select and FD_SETSIZE, --max-clients, edge-triggered draining,
the bounded thread pool."""

from __future__ import annotations

import os
import resource
import signal
import socket
import threading
import time

import pytest

from fdscope.load import LoadConfig, run_load
from fdscope.servers import MODELS
from fdscope.servers.core import OUT_CAP
from tests.servers_support import (
    ServerProc,
    exchange,
    expected,
    random_payload,
    recv_exactly,
    reset,
    server,
    wait_for,
)

ALL_MODELS = list(MODELS)
# Models that serve clients at the same time; `blocking` serves one at a time by design.
CONCURRENT = [m for m in ALL_MODELS if m != "blocking"]
# asyncio's transport reads up to 256 KiB per recv (selector_events max_size) before it can pause.
PENDING_SLACK = 256 * 1024


@pytest.fixture(scope="class", params=ALL_MODELS)
def shared(request: pytest.FixtureRequest):
    srv = ServerProc(request.param)
    try:
        yield srv
    finally:
        srv.kill()


@pytest.mark.slow
class TestEveryModel:
    def test_listening_event(self, shared: ServerProc) -> None:
        ev = shared.listening
        assert ev["event"] == "listening"
        assert ev["model"] == shared.model
        assert ev["host"] == "127.0.0.1"
        assert ev["pid"] == shared.pid
        assert 0 < ev["port"] < 65536
        if shared.model == "selectors":
            # DefaultSelector on Linux is EpollSelector; the server must say which it got.
            assert ev["selector"] == "EpollSelector"

    def test_concurrent_random_payloads(self, shared: ServerProc) -> None:
        cfg = LoadConfig(host=shared.host, port=shared.port, connections=6, messages=3,
                         size_min=1, size_max=256 * 1024, seed=5, stall_timeout=15)
        doc = run_load(cfg)
        assert doc["ok"], doc["verdict"]
        assert doc["messages_ok"] == 18
        assert doc["bytes_verified"] == doc["bytes_sent"] > 0
        assert shared.alive()

    def test_client_reset_mid_stream(self, shared: ServerProc) -> None:
        victim = socket.create_connection(shared.addr, timeout=5)
        payload = random_payload(200_000, seed=1)
        victim.sendall(payload)
        first = recv_exactly(victim, 1000)
        assert first == expected(payload[:1000])
        reset(victim)  # RST while replies are still being sent
        other = random_payload(50_000, seed=2)
        assert exchange(shared.addr, other) == expected(other)
        assert shared.alive()
        assert "Traceback" not in shared.stderr()

    def test_slow_reader_gets_backpressure(self, shared: ServerProc) -> None:
        model = shared.model
        with server(model) as srv:
            slow = socket.socket()
            # A small receive buffer stops autotuning, so replies pile up on the server side.
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            slow.connect(srv.addr)
            big = random_payload(16 * 1024 * 1024, seed=3)
            sender = threading.Thread(target=slow.sendall, args=(big,), daemon=True)
            sender.start()
            time.sleep(0.5)
            small = random_payload(64 * 1024, seed=4)
            fast = socket.create_connection(srv.addr, timeout=5)
            fast.sendall(small)
            if model == "blocking":
                # The only thread is stuck writing to the slow reader: nobody else is served.
                fast.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    fast.recv(1)
            else:
                assert recv_exactly(fast, len(small), timeout=3) == expected(small)
            got = recv_exactly(slow, len(big), timeout=30)
            sender.join(10)
            assert got == expected(big)
            slow.close()
            if model == "blocking":
                assert recv_exactly(fast, len(small), timeout=5) == expected(small)
            fast.close()
            rc, stopped = srv.stop()
        assert rc == 0
        assert stopped is not None
        assert stopped["bytes_in"] == stopped["bytes_out"] == len(big) + len(small)
        if model in ("blocking", "threads"):
            # No user-space buffer: a blocked sendall() is the backpressure.
            assert stopped["peak_pending"] == 0
        else:
            assert stopped["backpressure_pauses"] >= 1
            assert stopped["partial_writes"] >= 1
            assert 0 < stopped["peak_pending"] <= OUT_CAP + PENDING_SLACK

    def test_sigterm_closes_all_and_prints_totals(self, shared: ServerProc) -> None:
        with server(shared.model) as srv:
            a = random_payload(10_000, seed=6)
            assert exchange(srv.addr, a) == expected(a)
            b = socket.create_connection(srv.addr, timeout=5)
            b.sendall(b"b" * 100)
            assert recv_exactly(b, 100) == b"B" * 100
            reset(b)
            c = socket.create_connection(srv.addr, timeout=5)
            c.sendall(b"hello")
            assert recv_exactly(c, 5) == b"HELLO"
            time.sleep(0.3)  # let the server see b's RST before the shutdown
            rc, stopped = srv.stop()
            assert c.recv(10) == b""  # the server closed the idle client
            c.close()
            err = srv.stderr()
        assert rc == 0, err
        assert stopped is not None, err
        assert stopped["clients"] == 3
        assert stopped["bytes_in"] == stopped["bytes_out"] == 10_000 + 100 + 5
        assert stopped["closed"] == {"eof": 1, "ECONNRESET": 1, "shutdown": 1}
        assert "Traceback" not in err


@pytest.mark.slow
def test_select_refuses_fds_beyond_fd_setsize_and_keeps_serving() -> None:
    clients_wanted = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = clients_wanted + 100
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} < {need}: cannot open fds beyond FD_SETSIZE")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))  # the child inherits it
    socks: list[socket.socket] = []
    try:
        with server("select") as srv:
            for _ in range(clients_wanted):
                try:
                    socks.append(socket.create_connection(srv.addr, timeout=5))
                except ConnectionResetError:
                    pass  # refused (fd >= 1024) and reset before connect() returned to us
            assert wait_for(lambda: srv.stderr().count("FD_SETSIZE 1024") >= 1, 10)
            time.sleep(0.3)
            assert srv.alive()
            # An accepted client below fd 1024 is still served while others were refused.
            socks[0].sendall(b"still here")
            assert recv_exactly(socks[0], 10) == b"STILL HERE"
            for s in socks:
                s.close()
            socks.clear()
            # Until the server has seen the closes, a newcomer can still land on fd 1024.
            assert wait_for(lambda: _try_exchange(srv.port), 5)
            after = random_payload(100_000, seed=7)
            assert exchange(srv.addr, after) == expected(after)
            rc, stopped = srv.stop()
            err = srv.stderr()
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert rc == 0
    assert stopped is not None
    refused = stopped["rejected_by"].get("fd_setsize", 0)
    assert refused > 0
    assert err.count("FD_SETSIZE 1024") == refused
    assert "select() cannot watch it" in err
    assert stopped["clients"] + refused >= clients_wanted + 2
    assert "Traceback" not in err


@pytest.mark.parametrize("model", ["epoll", "threads", "asyncio", "asyncio-uvloop", "io_uring"])
def test_max_clients_refuses_the_extra_client(model: str) -> None:
    with server(model, "--max-clients", "2") as srv:
        a = socket.create_connection(srv.addr, timeout=5)
        b = socket.create_connection(srv.addr, timeout=5)
        for s in (a, b):
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"X"
        try:
            # The server's RST can beat connect() back to user space on a fast loopback.
            with socket.create_connection(srv.addr, timeout=5) as extra:
                extra.sendall(b"y")
                refused = extra.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            refused = True
        assert refused
        assert wait_for(lambda: "--max-clients 2 reached" in srv.stderr(), 5)
        a.close()
        # Until the server has seen a's close, a newcomer is still one too many.
        assert wait_for(lambda: _try_exchange(srv.port), 5)
        b.close()
        rc, stopped = srv.stop()
        err = srv.stderr()
    assert rc == 0 and stopped is not None
    assert set(stopped["rejected_by"]) == {"max_clients"}
    assert stopped["rejected_by"]["max_clients"] == err.count("--max-clients 2 reached") >= 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["epoll-et", "sigio"])
def test_edge_like_models_never_stall_on_large_messages(model: str) -> None:
    """With edge-like readiness a missed drain is a hang, not a slowdown: a read or write that
    stops before EAGAIN leaves data no new edge will announce. The pause/resume half of that
    trap is covered by test_slow_reader_gets_backpressure (paused, then every byte arrives)."""
    with server(model) as srv:
        cfg = LoadConfig(host=srv.host, port=srv.port, connections=4, messages=3,
                         size_min=512 * 1024, size_max=2 * 1024 * 1024, seed=8, stall_timeout=5)
        doc = run_load(cfg)
        rc, stopped = srv.stop()
    assert doc["ok"], doc["verdict"]
    assert doc["errors"] == {}
    assert doc["messages_ok"] == 12
    assert rc == 0 and stopped is not None
    assert stopped["bytes_in"] == stopped["bytes_out"] == doc["bytes_verified"]


def test_thread_pool_bounds_concurrency() -> None:
    """--pool 2: a third client waits until a worker is free (the seed's bounded pool)."""
    with server("threads", "--pool", "2") as srv:
        assert srv.listening["pool"] == 2
        a = socket.create_connection(srv.addr, timeout=5)
        b = socket.create_connection(srv.addr, timeout=5)
        for s in (a, b):
            s.sendall(b"x")
            assert recv_exactly(s, 1) == b"X"
        c = socket.create_connection(srv.addr, timeout=5)
        c.sendall(b"waiting")
        c.settimeout(0.4)
        with pytest.raises(TimeoutError):
            c.recv(1)
        a.close()
        assert recv_exactly(c, 7, timeout=5) == b"WAITING"
        for s in (b, c):
            s.close()
        rc, _ = srv.stop()
    assert rc == 0


def test_serve_usage_errors(invoke) -> None:  # type: ignore[no-untyped-def]
    r = invoke("serve", "kqueue")
    assert r.exit_code == 2
    r = invoke("serve", "epoll", "--pool", "3")
    assert r.exit_code == 2
    assert "--pool applies only to the threads model" in r.output


def test_serve_port_in_use_is_one_line_error() -> None:
    import subprocess
    import sys

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        r = subprocess.run([sys.executable, "-m", "fdscope", "serve", "epoll", "--port", str(port)],
                           capture_output=True, text=True, timeout=20)
    finally:
        holder.close()
    assert r.returncode == 1
    assert r.stderr.startswith("fdscope: cannot serve on 127.0.0.1:")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["serve", "load", "run"])
def test_help_has_examples(invoke, name: str) -> None:  # type: ignore[no-untyped-def]
    r = invoke(name, "--help")
    assert r.exit_code == 0
    assert "Examples:" in r.output
    assert f"fdscope {name}" in r.output.split("Examples:")[1]


@pytest.mark.timing
@pytest.mark.slow
@pytest.mark.parametrize("model", ["epoll", "epoll-et", "select", "threads", "asyncio",
                                   "io_uring"])
def test_out_of_fds_sheds_clients_without_spinning(model: str) -> None:
    """accept() failing with EMFILE leaves the connection queued and the listener readable: a
    level-triggered loop that just retries spins at 100% CPU. The server must shed the client
    (spare-fd idiom), say so, stay idle, and serve again once fds free up."""
    import subprocess
    import sys

    import psutil

    from tests.servers_support import readline_timeout, skip_unavailable

    skip_unavailable(model)

    def low_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, hard))

    # PYTHONFAULTHANDLER: a server that ignores SIGTERM is sent SIGABRT, and its stacks show
    # where it hangs.
    proc = subprocess.Popen([sys.executable, "-m", "fdscope", "serve", model, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=low_limit, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    socks: list[socket.socket] = []
    try:
        import json

        port = json.loads(readline_timeout(proc, 10))["port"]
        for _ in range(30):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except ConnectionResetError:
                pass  # shed before connect() returned: refused either way
        time.sleep(0.3)
        ps = psutil.Process(proc.pid)
        t0 = sum(ps.cpu_times()[:2])
        time.sleep(1.0)
        spent = sum(ps.cpu_times()[:2]) - t0
        assert spent < 0.3, f"server used {spent:.2f} s of CPU in 1 s while out of fds"
        served = []
        for s in socks:
            try:
                s.sendall(b"x")
                s.settimeout(1)
                served.append(s.recv(1) == b"X")
            except OSError:
                served.append(False)
        # Clients up to the fd limit are served; every later one was reset, none hangs.
        assert 0 < sum(served) < 30
        assert served == sorted(served, reverse=True)
        for s in socks:
            s.close()
        socks.clear()
        assert wait_for(lambda: _try_exchange(port), 5)
        proc.send_signal(15)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=10)
            pytest.fail(f"server did not stop within 10 s of SIGTERM; stdout:\n{out}\n"
                        f"stderr:\n{err}")
    finally:
        for s in socks:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    # Every refused client was shed by the server and said so (a retry of the final exchange
    # may also have arrived before the server saw the closes, hence >=).
    shed = err.count("EMFILE (out of file descriptors)")
    assert shed >= 30 - sum(served)
    assert "Traceback" not in err and len(err.splitlines()) == shed, err[:2000]
    stopped = json.loads(out.splitlines()[-1])
    assert stopped["rejected_by"] == {"EMFILE": shed}


def _try_exchange(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"back")
            return recv_exactly(s, 4, timeout=1) == b"BACK"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.parametrize("model,args,busy", [
    ("nonblocking", (), True),
    ("nonblocking", ("--idle-sleep", "0.05"), False),
    ("epoll", (), False),
    ("sigio", (), False),
    ("io_uring", (), False),
])
def test_idle_cpu(model: str, args: tuple[str, ...], busy: bool) -> None:
    """The seed's claim, measured: polling without waiting burns a CPU even with nothing to do;
    a server that waits in the kernel uses none."""
    import psutil

    with server(model, *args) as srv:
        clients = [socket.create_connection(srv.addr, timeout=5) for _ in range(10)]
        try:
            time.sleep(0.2)
            ps = psutil.Process(srv.pid)
            t0, w0 = sum(ps.cpu_times()[:2]), time.monotonic()
            v0 = ps.num_ctx_switches().voluntary
            time.sleep(0.8)
            percent = (sum(ps.cpu_times()[:2]) - t0) / (time.monotonic() - w0) * 100
            slept = ps.num_ctx_switches().voluntary - v0
        finally:
            for c in clients:
                c.close()
    if busy:
        # On a loaded machine the poller gets only a share of a core, but it never sleeps.
        assert percent > 20 and slept <= 2, (percent, slept)
    else:
        assert percent < 10, percent


@pytest.mark.parametrize("extra", [[], ["--pool", "2"]])
def test_worker_threads_block_stop_signals(extra: list[str]) -> None:
    """SIGTERM must reach the main thread (the one in accept()): a worker that took it would
    leave the server running. Every other thread's SigBlk holds SIGINT and SIGTERM."""
    with server("threads", *extra) as srv:
        clients = [socket.create_connection(srv.addr, timeout=5) for _ in range(2)]  # <= pool
        try:
            for c in clients:
                c.sendall(b"a")
                assert recv_exactly(c, 1) == b"A"
            tids = [int(t) for t in os.listdir(f"/proc/{srv.pid}/task") if int(t) != srv.pid]
            assert len(tids) >= 2
            stop_bits = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1)) | \
                (1 << (signal.SIGALRM - 1))  # the tick must reach the main thread too
            for tid in tids:
                with open(f"/proc/{srv.pid}/task/{tid}/status") as f:
                    blk = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
                assert blk & stop_bits == stop_bits, f"thread {tid} can take SIGINT/SIGTERM"
            # The main thread blocks them only inside Thread.start(), which returns after the
            # worker runs: a worker may answer before the main thread has restored its mask.
            deadline = time.monotonic() + 2
            while True:
                with open(f"/proc/{srv.pid}/status") as f:
                    main = next(int(line.split()[1], 16) for line in f
                                if line.startswith("SigBlk:"))
                if main & stop_bits == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert main & stop_bits == 0
            with open(f"/proc/{srv.pid}/status") as f:
                caught = next(int(line.split()[1], 16) for line in f
                              if line.startswith("SigCgt:"))
            assert caught & stop_bits == stop_bits  # handlers for INT, TERM and the ALRM tick
        finally:
            for c in clients:
                c.close()
        rc, stopped = srv.stop()
    assert rc == 0 and stopped is not None


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_lost_shutdown_still_stops_the_loop() -> None:
    """A Shutdown raised inside a finalizer is printed and lost ("Exception ignored in ..."):
    the stop is remembered, and the next SIGALRM tick raises it again."""
    import gc

    from fdscope.servers import core

    core._stop_requested.clear()

    def finalizer_eats_it() -> None:
        def gen():
            try:
                yield
            finally:
                core.raise_shutdown(signal.SIGTERM, None)  # as if the signal landed here

        g = gen()
        next(g)
        cycle = [g]
        cycle.append(cycle)  # only the collector frees it, running the finally
        del g, cycle
        gc.collect()

    finalizer_eats_it()  # the Shutdown is swallowed here (unraisable), not raised
    with pytest.raises(core.Shutdown, match="SIGTERM"):
        core._tick(signal.SIGALRM, None)
    core._stop_requested.clear()
    core._tick(signal.SIGALRM, None)  # nothing pending: no exception


@pytest.mark.slow
@pytest.mark.parametrize("model", ALL_MODELS)
def test_a_second_stop_signal_keeps_the_totals(model: str) -> None:
    """A supervisor that repeats SIGTERM, or a second Ctrl-C: the shutdown under way must still
    close every client and print the stopped event with the totals. The handlers used to be
    reset to the default first, so the second signal killed the server mid-shutdown."""
    import subprocess
    import sys

    from fdscope.servers.run import stopped_event
    from tests.servers_support import readline_timeout, skip_unavailable

    skip_unavailable(model)
    proc = subprocess.Popen([sys.executable, "-m", "fdscope", "serve", model, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        import json

        port = json.loads(readline_timeout(proc, 10))["port"]
        n = 1 if model == "blocking" else 40  # blocking serves one client at a time
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"abc")
            assert recv_exactly(c, 3) == b"ABC"
            clients.append(c)
        # Repeated SIGTERMs until it exits: some land while it shuts down.
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.0005)
        out, err = proc.communicate(timeout=10)
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stopped = stopped_event(out)
    assert stopped is not None, (proc.returncode, err)
    assert stopped["clients"] == n and stopped["bytes_in"] == 3 * n
    assert stopped["closed"] == {"shutdown": n}, stopped
    if model != "blocking":  # see fdscope.servers.core._COUNTING
        assert stopped["bytes_out"] == 3 * n, stopped
    assert "Traceback" not in err
    # Once the totals are out the default action is back: a late SIGTERM may end the process.
    assert proc.returncode in (0, -signal.SIGTERM)


def test_stdout_closed_then_sigterm_exits_quietly() -> None:
    """`serve --json | head -1`, then SIGTERM: the stopped event meets a closed pipe. That is
    not "cannot serve on ...": the server exits quietly (exit 1, nothing on stderr)."""
    import subprocess
    import sys

    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "fdscope", "serve", "epoll", "--json"],
                            stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    try:
        first = b""
        while not first.endswith(b"\n"):
            first += os.read(r, 4096)
        os.close(r)  # `head -1` has its line and exits
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert b'"event":"listening"' in first
    assert proc.returncode == 1 and err == b"", err


def test_asyncio_accept_retry_on_a_closed_listener_is_not_an_error(capsys) -> None:
    """Out of fds, asyncio retries accept() a second later even if the server closed meanwhile;
    the retry adds fd -1 and asyncio reports ValueError. At shutdown that is not an error."""
    from fdscope.servers.asyncio import AsyncioServer
    from fdscope.servers.core import ServeConfig

    server = AsyncioServer(ServeConfig("asyncio"), lambda *a: None)
    server.bind()
    assert server.listener is not None
    loop = server.new_loop()
    try:
        err = ValueError("Invalid file descriptor: -1")
        server._loop_error(loop, {"message": "Exception in callback", "exception": err})
        assert "Invalid file descriptor" in capsys.readouterr().err  # still serving: reported
        server.stopping = True
        server.listener.close()
        server._loop_error(loop, {"message": "Exception in callback", "exception": err})
        assert capsys.readouterr().err == ""
    finally:
        loop.close()
        server.listener.close()


def test_a_shutdown_lost_in_a_finalizer_is_not_reported(monkeypatch) -> None:
    """A stop signal's handler can run inside a weakref callback or __del__ (a worker thread's
    teardown); its Shutdown is then "ignored" by Python and raised again by the next tick. That
    is no error to report; other unraisable exceptions still reach the previous hook."""
    import sys
    import types

    from fdscope.servers.core import Shutdown, install_stop_handlers, restore_handlers

    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))
    recorder = sys.unraisablehook
    previous = install_stop_handlers()
    try:
        for exc in (Shutdown("SIGTERM"), ValueError("boom")):
            sys.unraisablehook(types.SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                                     exc_traceback=None, err_msg=None,
                                                     object=None))
    finally:
        restore_handlers(previous)
    assert [type(e) for e in seen] == [ValueError]
    assert sys.unraisablehook is recorder
