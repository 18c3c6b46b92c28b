"""`fdscope inspect PID --peers`: the other holders of each pipe and socket, checked against
the processes the test started (and against `ss -xp` for the unix peer)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.inspect_support import Target

PARENT = textwrap.dedent(
    r"""
    import json, os, socket, subprocess, sys, time
    a, b = socket.socketpair()
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                             pass_fds=(b.fileno(), w))
    bfd = b.fileno()
    b.close(); os.close(w)
    path = os.path.join(sys.argv[1], "srv.sock")
    srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(4)
    print(json.dumps({"a": a.fileno(), "b": bfd, "r": r, "w": w, "child": child.pid,
                      "path": path, "srv": srv.fileno()}), flush=True)
    conn, _ = srv.accept()
    sys.stderr.write(json.dumps({"conn": conn.fileno()}) + "\n"); sys.stderr.flush()
    try:
        time.sleep(3600)
    finally:
        child.kill()
    """
)
CLIENT = textwrap.dedent(
    r"""
    import json, socket, sys, time
    c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
    print(json.dumps({"fd": c.fileno()}), flush=True)
    time.sleep(3600)
    """
)


def _peers(pid: int) -> tuple[list[dict], dict]:
    res = subprocess.run([sys.executable, "-m", "fdscope", "inspect", str(pid), "--peers",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    return doc["peers"], doc


def _holders(peers: list[dict], fd: int, relation: str) -> set[tuple[int, int, str | None]]:
    return {(h["pid"], h["fd"], h["end"]) for p in peers if p["fd"] == fd
            and p["relation"] == relation for h in p["holders"]}


@pytest.mark.timeout(120)
def test_peers_of_pipes_and_unix_sockets(tmp_path):
    with Target(PARENT, str(tmp_path)) as parent:
        info = parent.info
        with Target(CLIENT, info["path"]) as client:
            line = parent.proc.stderr.readline()
            conn = json.loads(line)["conn"]
            peers, doc = _peers(parent.pid)
            # the socketpair's other end went to the child (same fd number)
            assert _holders(peers, info["a"], "peer") == {(info["child"], info["b"], None)}
            # the pipe's write end went to the child too
            assert _holders(peers, info["r"], "pipe") == {(info["child"], info["w"], "write")}
            assert [p["state"] for p in peers if p["fd"] == info["r"]] == ["read"]
            # the accepted connection's peer is the client's socket
            assert _holders(peers, conn, "peer") == {(client.pid, client.info["fd"], None)}
            mine = next(p for p in peers if p["fd"] == conn)
            assert mine["type"] == "unix" and mine["state"] == "CONNECTED"
            # and seen from the client, the peer is the parent's accepted fd
            cpeers, _ = _peers(client.pid)
            assert _holders(cpeers, client.info["fd"], "peer") == {(parent.pid, conn, None)}
            # text output: one line per holder
            res = subprocess.run([sys.executable, "-m", "fdscope", "inspect", str(parent.pid),
                                  "--peers", "--section", "summary"], capture_output=True,
                                 text=True, timeout=60)
            assert (f"fd {conn} unix CONNECTED -> pid {client.pid} (python"
                    in res.stdout), res.stdout
    assert "peers" not in json.loads(subprocess.run(
        [sys.executable, "-m", "fdscope", "inspect", str(os.getpid()), "--json"],
        capture_output=True, text=True, timeout=60).stdout)


def _ss() -> str:
    ss = shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin")
    if ss is None:
        if os.environ.get("CI"):
            pytest.fail("ss (iproute2, scripts/ci-deps) is missing in CI")
        pytest.skip("ss (iproute2) is not installed: no cross-check")
    return ss


@pytest.mark.timeout(120)
def test_unix_peer_is_the_one_ss_shows(tmp_path):
    ss = _ss()
    with Target(PARENT, str(tmp_path)) as parent, Target(CLIENT, parent.info["path"]):
        conn = json.loads(parent.proc.stderr.readline())["conn"]
        peers, _ = _peers(parent.pid)
        mine = next(p for p in peers if p["fd"] == conn and p["relation"] == "peer")
        out = subprocess.run([ss, "-xpn"], capture_output=True, text=True, timeout=60).stdout
        line = next((x for x in out.splitlines() if f" {mine['inode']} " in x), None)
        assert line is not None and f" {mine['peer_inode']} " in line, out[-2000:]


def test_peers_and_watch_conflict():
    res = subprocess.run([sys.executable, "-m", "fdscope", "inspect", str(os.getpid()),
                          "--peers", "--watch", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("fdscope: --peers")
