"""The speed machinery of `inspect` gives the same answers as the plain path: the forked helper,
readlinkat with holes, the fd count from st_size, the fast JSON rows (scripts/bench_inspect.py
measures the speed itself)."""

from __future__ import annotations

import json
import os

from inspect_support import ZOO, Target

import fdscope.inspect as I
from fdscope.proc import Proc
from fdscope.render.inspect import render_json, render_report_json
from fdscope.scan import Helper

# A process with N dense fds (no holes: exercises the st_size guess without the listdir
# fallback): unix pairs, loopback TCP pairs, pipes, an epoll set over some of them.
MANY = """
import json, os, resource, select, socket, sys, time
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
ep = select.epoll()
keep = []
lst = socket.create_server(("127.0.0.1", 0))
for _ in range(50):
    c = socket.create_connection(lst.getsockname()); s, _a = lst.accept(); keep += [c, s]
    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLET)
while len(os.listdir("/proc/self/fd")) < n - 4:
    a, b = socket.socketpair(); r, w = os.pipe(); keep += [a, b, r, w]
    ep.register(a.fileno(), select.EPOLLIN)
    ep.register(r, select.EPOLLIN)
print(json.dumps({"fds": len(os.listdir("/proc/self/fd"))}), flush=True)
time.sleep(600)
"""


def _without_cpu(doc):
    return {k: v for k, v in doc.items() if k != "cpu"}


class CountingProc(Proc):
    """Counts the listings of /proc/PID/fd."""

    listed = 0

    def listdir(self, *parts, pid=None):
        if parts[-1] == "fd":
            self.listed += 1
        return super().listdir(*parts, pid=pid)


def _both_ways(monkeypatch, pid):
    """(report with the parallel reads and the st_size guess, report without either, how many
    times the fast run listed the fd directory). With the C accelerator the parallel reads run
    in threads, without it in the forked helper (the `speedups` fixture sets which)."""
    forks = []
    threads = []
    monkeypatch.setattr("fdscope.scan.Helper.__init__", _spy(Helper.__init__, forks))
    monkeypatch.setattr(I.Background, "__init__", _spy(I.Background.__init__, threads))
    monkeypatch.setattr(I, "HELPER_MIN_FDS", 1)
    proc = CountingProc()
    fast = I.inspect_process(pid, sample=0, proc=proc)
    assert (len(forks), len(threads) > 0) == ((0, True) if I.C is not None else (1, False))
    monkeypatch.setattr(I, "HELPER_MIN_FDS", 10**9)
    plain = I.inspect_process(pid, sample=0)
    assert len(forks) <= 1
    return fast, plain, proc.listed


def _spy(func, calls):
    def wrapper(*args, **kwargs):
        calls.append(args)
        return func(*args, **kwargs)

    return wrapper


def test_helper_path_matches_plain_path_on_the_zoo(tmp_path, monkeypatch, speedups):
    # The zoo has holes in its fd table (fd 27 was closed): the st_size guess must fall back
    # to listing the table and still find every fd, with nothing counted as vanished.
    with Target(ZOO, str(tmp_path)) as target:
        target.wait_sleeping()
        fast, plain, listed = _both_ways(monkeypatch, target.pid)
    assert listed == 1
    assert 27 not in [e.fd for e in plain.fds] and plain.fds[-1].fd > 27
    assert _without_cpu(fast.to_json()) == _without_cpu(plain.to_json())
    assert not any("vanished" in n or "closed or exited" in n for n in fast.notes)


def test_helper_path_matches_plain_path_on_many_fds(monkeypatch, speedups):
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        count = os.stat(f"/proc/{target.pid}/fd").st_size
        fast, plain, listed = _both_ways(monkeypatch, target.pid)
    assert listed == (0 if count else 1)  # a dense table needs no listing on Linux >= 6.2
    doc = fast.to_json()
    assert _without_cpu(doc) == _without_cpu(plain.to_json())
    # the target's own count included the fd its listdir() had open
    assert doc["summary"]["open_fds"] == target.info["fds"] - 1
    assert count in (0, doc["summary"]["open_fds"])  # 0 before Linux 6.2
    assert doc["summary"]["socket_states"]["ESTABLISHED"] == 100
    assert {r["status"] for r in doc["epoll"][0]["registrations"]} == {"ok"}
    # flags were read for the edge-triggered targets (the epoll_et_blocking rule needs them)
    et = [r["tfd"] for r in doc["epoll"][0]["registrations"] if "EPOLLET" in r["events"]]
    assert len(et) == 50 and all(doc["fds"][tfd]["flags"] for tfd in et)
    # the column-wise JSON renderer gives the same document as json.dumps
    assert json.loads(render_report_json(fast)) == json.loads(render_json(doc)) == \
        json.loads(json.dumps(doc))


def test_helper_frames_roundtrip_and_a_failing_child_is_reported():
    def work(base, recv):
        yield {"x": base, "rows": [(1, "a", None)]}
        got = recv()
        yield got * 2

    h = Helper(work, 21)
    assert h.next() == {"x": 21, "rows": [(1, "a", None)]}
    h.send(21)
    assert h.next() == 42
    assert h.next() is None  # the child finished: no more frames
    h.close()
    h.close()

    def broken(recv):
        yield 1
        raise RuntimeError("boom")

    h = Helper(broken)
    assert h.next() == 1
    assert h.next() is None and h.failed
    h.close()


def test_helper_failure_falls_back_to_the_parent(tmp_path, monkeypatch, no_speedups):
    def dead(*_args):
        raise RuntimeError("helper died")
        yield  # pragma: no cover

    with Target(ZOO, str(tmp_path)) as target:
        target.wait_sleeping()
        monkeypatch.setattr(I, "HELPER_MIN_FDS", 1)
        monkeypatch.setattr(I, "_helper_work", dead)
        fast = I.inspect_process(target.pid, sample=0)
        monkeypatch.setattr(I, "HELPER_MIN_FDS", 10**9)
        plain = I.inspect_process(target.pid, sample=0)
    assert _without_cpu(fast.to_json()) == _without_cpu(plain.to_json())


def test_readlinks_resumes_after_holes_and_counts_them(tmp_path, speedups):
    for fd in (0, 1, 3, 7):
        os.symlink(f"pipe:[{100 + fd}]", tmp_path / str(fd))
    links, missing = Proc(str(tmp_path)).readlinks(names=[str(i) for i in range(9)])
    assert links == {"0": "pipe:[100]", "1": "pipe:[101]", "3": "pipe:[103]", "7": "pipe:[107]"}
    assert list(links) == ["0", "1", "3", "7"] and missing == 5
    assert Proc(str(tmp_path / "gone")).readlinks(names=["0", "1"]) == ({}, 2)


def test_read_many_reads_whole_files_and_counts_vanished(tmp_path, speedups):
    (tmp_path / "3").write_text("pos:\t0\nflags:\t02\n")
    (tmp_path / "4").write_text("x" * 10000 + "\n")  # longer than the first read
    texts, missing = Proc(str(tmp_path)).read_many(names=["3", "4", "5"])
    assert texts == {"3": "pos:\t0\nflags:\t02\n", "4": "x" * 10000 + "\n"} and missing == 1
    assert Proc(str(tmp_path / "gone")).read_many(names=["3"]) == ({}, 1)


def test_read_many_reads_a_net_table_to_the_end(speedups):
    """/proc/net/tcp answers a read with whole records only: a short read is not its end."""
    whole = Proc().read_text("self", "net", "tcp")
    texts, _ = Proc().read_many("self", "net", names=["tcp"])
    # sockets of other processes come and go between the two reads
    assert abs(texts["tcp"].count("\n") - whole.count("\n")) < 50
    assert len(texts["tcp"]) > 4096 or len(whole) <= 4096
