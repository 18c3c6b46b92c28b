"""fdscope against real daemons from Debian packages (issue 11): nginx, haproxy, memcached,
redis, node (libuv), prometheus (Go), postgres, dnsmasq; each started once for this module on
127.0.0.1 with a temporary config (tests/daemons_support.py).

For each daemon, idle and while clients connect and disconnect: no WARN or CRIT finding in its
default configuration; fdscope's fds, sockets and epoll sets agree with lsfd, ss and the raw
fdinfo; io_model names how it waits; provoked faults are found (a client that stops reading, a
listener whose accept queue overflows, a low RLIMIT_NOFILE until EMFILE).

Before the identity and level fixes of issue 11, fdscope raised false alarms on five of them
(per-thread listeners, distinct eventfds sharing the anon inode, EPOLLET on a counter fd,
postgres's two wait sets, the race between reading links and interest lists under churn) and
showed a reset TCP connection as `unknown UNKNOWN` on all of them: docs/daemons.md has the
before/after table (scripts/daemons_baseline.py prints it).

A missing package fails when CI is set (scripts/ci-deps installs them) and skips otherwise.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pytest

from tests.daemons_support import (
    MIN_SEND_Q,
    SPECS,
    Daemon,
    Observation,
    fdscope,
    fdscope_inspect,
    fill_to_limit,
    find_binary,
    idle_clients,
    missing_binaries,
    observe,
    open_fds,
    provoke_overflow,
    provoke_reset,
    provoke_slow_reader,
    same_ss,
)

pytestmark = [pytest.mark.daemons, pytest.mark.slow, pytest.mark.timeout(300)]

DAEMONS = list(SPECS)
TOOLS = ("lsfd", "ss", "nsenter", "prlimit")

def require(name: str) -> None:
    """Fail in CI (scripts/ci-deps must have installed it), skip elsewhere."""
    spec = SPECS[name]
    missing = missing_binaries(spec) + [t for t in TOOLS if find_binary(t) is None]
    why = None
    if missing:
        why = (f"{name}: {', '.join(missing)} not found (Debian packages "
               f"{', '.join(spec.packages)}, util-linux, iproute2; scripts/ci-deps installs them)")
    elif os.geteuid() != 0:
        why = f"{name}: starting the daemons as their users needs root"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module", params=DAEMONS)
def daemon(request: pytest.FixtureRequest):
    require(request.param)
    d = Daemon(SPECS[request.param])
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def observed(daemon: Daemon) -> Observation:
    """Idle scan and cross-check, then 20 scans and 2 cross-checks under churn; once per daemon."""
    return observe(daemon)


# -- idle --------------------------------------------------------------------------------------


def test_idle_no_warn_or_crit(observed: Observation) -> None:
    bad = observed.idle.labels()
    assert not bad, observed.idle.detail(bad)


def test_idle_cross_checks(observed: Observation) -> None:
    check = observed.idle_check
    assert check.processes >= 1
    assert check.fds >= 5 and check.sockets >= 1, check.summary()
    if observed.name != "dnsmasq":  # dnsmasq waits in poll(): no epoll set
        assert check.registrations >= 1, check.summary()
    assert not check.mismatches, "\n".join(check.mismatches)


# -- under churn -------------------------------------------------------------------------------


def _churn_ran(obs: Observation) -> None:
    assert obs.churn.scans == 20
    assert obs.clients.get("ok", 0) >= 20, obs.clients  # the clients really came and went


def test_churn_no_epoll_warn_or_crit(observed: Observation) -> None:
    _churn_ran(observed)
    bad = observed.churn.labels(prefix="epoll_")
    assert not bad, observed.churn.detail(bad)


def test_churn_no_warn_or_crit(observed: Observation) -> None:
    _churn_ran(observed)
    bad = observed.churn.labels()
    assert not bad, observed.churn.detail(bad)


def test_churn_cross_checks(observed: Observation) -> None:
    _churn_ran(observed)
    check = observed.churn_check
    assert check.fds >= 5 and check.sockets >= 1, check.summary()
    assert not check.mismatches, "\n".join(check.mismatches)


# -- io_model ----------------------------------------------------------------------------------

# How each daemon waits, from its design (role -> io_model.kind); roles as Daemon.role names
# them. nginx's master sleeps in sigsuspend and its channel sockets to the workers have
# O_ASYNC (FIOASYNC in ngx_spawn_process): signal-driven. PostgreSQL 15's postmaster waits in
# select() (ServerLoop); every other postgres process waits in its own WaitEventSet (epoll).
EXPECTED_KIND: dict[str, dict[str, str]] = {
    "nginx": {"main": "signal_driven", "worker": "epoll"},
    "haproxy": {"main": "epoll"},
    "memcached": {"main": "epoll"},
    "redis": {"main": "epoll"},
    "node": {"main": "epoll"},
    "prometheus": {"main": "epoll"},
    "postgres": {"main": "select", "*": "epoll"},
    "dnsmasq": {"main": "poll", "child": "blocking"},
}
# Threads waiting in epoll and the distinct epoll sets they wait on, per process: (min, max).
# haproxy: one set per thread (nbthread 2); memcached: the listener thread's and 4 workers';
# node: libuv's loop and V8's platform loop; Go: at most one thread in netpoll at a time.
EXPECTED_EPOLL_THREADS: dict[str, tuple[int, int]] = {
    "haproxy": (2, 2), "memcached": (5, 5), "redis": (1, 1), "node": (1, 2),
    "prometheus": (1, 1),
}


def _epoll_waiters(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in doc["threads"] if t["syscall"] in ("epoll_wait", "epoll_pwait")
            and t["state"] == "S"]


def test_io_model(daemon: Daemon) -> None:
    """With one client connected and idle, every process of the daemon is classified as its
    design says, within 20 snapshots (a Go program's netpoller thread is now and then between
    two epoll_pwait calls). The client gives postgres a backend and dnsmasq a forked child."""
    with idle_clients(daemon.spec, daemon.port, 1):
        roles = _check_io_model(daemon)
    if daemon.spec.name in ("postgres", "dnsmasq"):  # the process per connection was there
        assert roles & {"backend", "child"}, roles


def _check_io_model(daemon: Daemon) -> set[str]:
    """Asserts each process's kind (and epoll details); returns the roles it saw."""
    from fdscope.inspect import inspect_process

    name = daemon.spec.name
    expected = EXPECTED_KIND[name]
    daemon.settle()
    roles = {daemon.role(p) for p in daemon.pids()}
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(20):
        pending = [p for p in daemon.pids() if p not in seen]
        for pid in pending:
            role = daemon.role(pid)
            want = expected.get(role, expected.get("*"))
            doc = inspect_process(pid, sample=None).to_json()
            if doc["io_model"]["kind"] == want:
                seen[pid] = doc
        if len(seen) == len(daemon.pids()):
            break
        time.sleep(0.1)
    wrong = {daemon.role(p): inspect_process(p, sample=None).to_json()["io_model"]
             for p in daemon.pids() if p not in seen}
    assert not wrong, f"expected {expected}, got {wrong}"
    for pid, doc in seen.items():
        summary = doc["io_model"]["summary"]
        if doc["io_model"]["kind"] == "epoll":
            waiters = _epoll_waiters(doc)
            epfds = sorted({t["args"]["epfd"] for t in waiters})
            # the summary names every set a thread waits on, and how many threads wait
            assert all(re.search(rf"\b{e}\b", summary) for e in epfds), (summary, epfds)
            assert f"{len(waiters)} thread" in summary, summary
            if name in EXPECTED_EPOLL_THREADS and daemon.role(pid) == "main":
                lo, hi = EXPECTED_EPOLL_THREADS[name]
                assert lo <= len(waiters) <= hi and len(epfds) == len(waiters), summary
        if name == "prometheus":  # Go: the other threads are parked in futex
            others = [t for t in doc["threads"] if t not in _epoll_waiters(doc)]
            assert others and all(t["syscall"] in ("futex", "nanosleep", "clock_nanosleep")
                                  for t in others), others
    return roles


# -- provoked faults ---------------------------------------------------------------------------

def test_slow_reader_send_queue(daemon: Daemon) -> None:
    """A client that asks for large replies and never reads: the server's socket to it holds
    a send queue that does not drain; fdscope's send_q shows it and agrees with ss's Send-Q."""
    if daemon.spec.big_request is None and daemon.spec.protocol != "pg":
        pytest.skip(f"{daemon.spec.name}: no large reply to ask for (see its Spec)")
    res = provoke_slow_reader(daemon)
    assert res.entry, f"no socket to {res.local} with send_q >= {MIN_SEND_Q}"
    before, after, sock = res.ss_before, res.ss_after, res.entry["socket"]
    assert before is not None and same_ss(before, after), (before, after)
    assert sock["send_q"] == before["send_q"] >= MIN_SEND_Q, (sock, before)
    assert sock["state"] == "ESTABLISHED" and sock["remote"] == res.local


def test_reset_connection(daemon: Daemon) -> None:
    """A client resets (RST) a connection the daemon holds while the daemon is stopped: the
    daemon's socket is still a TCP socket (lsfd names it TCP: its sockprotoname), now CLOSE and
    in no /proc/net table and no ss listing. fdscope must still call it tcp, and agree with
    lsfd on every other fd."""
    res = provoke_reset(daemon)
    assert res.before, f"no process of {daemon.spec.name} holds the client's connection"
    assert res.after and res.after["inode"] == res.before["inode"], res
    assert not res.check.mismatches, "\n".join(res.check.mismatches)
    assert res.after["socket"]["proto"] == "tcp", res.after


def test_backlog_overflow(daemon: Daemon) -> None:
    """A stalled daemon (SIGSTOP) and backlog + 4 connects: the accept queue holds backlog + 1
    (include/net/sock.h sk_acceptq_is_full), the rest are dropped (TcpExt ListenOverflows);
    fdscope says listen_backlog_full (CRIT). The daemon serves again after SIGCONT."""
    res = provoke_overflow(daemon)
    assert res.backlog, "no listener with a backlog on the daemon's port"
    assert res.full and res.full["level"] == "crit", (res.findings, res.listener,
                                                     res.connect_errors)
    assert f"backlog {res.backlog}" in res.full["message"], res.full
    assert res.overflows > 0, res


# Daemons that accept until accept() fails with EMFILE. Left out: redis lowers maxclients to
# the limit minus 32 and refuses clients with an error; memcached refuses to start when it
# cannot raise RLIMIT_NOFILE to its connection limit; haproxy derives maxconn from the limit.
NOFILE = {"nginx": "Too many open files", "node": None, "prometheus": "too many open files"}
LOW_NOFILE = 64


@pytest.mark.parametrize("name", list(NOFILE))
def test_low_nofile_emfile(name: str) -> None:
    """Run with RLIMIT_NOFILE 64 and connect until it is full: inspect says fd_limit_near
    (CRIT) and `limits --pid` says fd_limit_critical. (Its other findings are those of
    test_idle_no_warn_or_crit.)"""
    require(name)
    with Daemon(SPECS[name], nofile=LOW_NOFILE) as d, fill_to_limit(d, LOW_NOFILE, NOFILE[name]):
        full = [p for p in d.pids() if open_fds(p) >= LOW_NOFILE]
        assert full, {p: open_fds(p) for p in d.pids()}
        if NOFILE[name]:  # the daemon logs its EMFILE
            assert NOFILE[name] in d.log(), d.log()[-2000:]
        pid = full[0]
        doc = fdscope_inspect(pid)
        assert doc["summary"]["soft_limit"] == LOW_NOFILE
        assert doc["summary"]["open_fds"] == LOW_NOFILE and doc["summary"]["headroom"] == 0
        near = [f for f in doc["findings"] if f["code"] == "fd_limit_near"]
        assert near and near[0]["level"] == "crit", doc["findings"]
        res = fdscope("limits", "--pid", str(pid), "--json")
        assert res.returncode == 0, res.stderr
        lim = json.loads(res.stdout)
        assert lim["rlimit_nofile"] == {"soft": LOW_NOFILE, "hard": LOW_NOFILE}
        assert lim["open_fds"] == LOW_NOFILE and lim["headroom"] == 0
        assert lim["verdicts"]["open_fds"] == "crit", lim["verdicts"]
        assert "fd_limit_critical" in [f["code"] for f in lim["findings"]], lim["findings"]
