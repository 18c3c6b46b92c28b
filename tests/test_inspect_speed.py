"""The speed machinery of `inspect` gives the same answers as the plain path: the read-ahead,
the fd count from st_size with its listing fallback, the batch reads with holes, the fast JSON
rows (scripts/bench_inspect.py measures the speed itself)."""

from __future__ import annotations

import json
import os

import pytest
from inspect_support import MANY, ZOO, CountingProc, Target

from fdscope.inspect import gather, readahead
from fdscope.inspect.report import inspect_process
from fdscope.proc import Proc
from fdscope.render.inspect import render_json, render_report_json


def _without_cpu(doc):
    """What two scans of a sleeping process agree on: not the lifetime CPU average, nor the
    network namespace's drop counters (other processes' connections move them), which the
    listen_backlog_full message quotes, nor a sleeping thread's wchan."""
    out = {k: v for k, v in doc.items() if k not in ("cpu", "listen_drops")}
    if "findings" in out:
        out["findings"] = [{**f, "message": f["message"].split("; ListenOverflows")[0]
                            .split("; this network namespace")[0].split("; TcpExt")[0]}
                           if f["code"] == "listen_backlog_full" else f
                           for f in out["findings"]]
    if "threads" in out:  # the kernel reads a sleeping task's wchan as 0 now and then
        out["threads"] = [{k: v for k, v in t.items() if k != "wchan"} for t in out["threads"]]
    return out


def _both_ways(monkeypatch, pid):
    """(report from the read-ahead's gather, report gathered in place, how many times the fd
    directory was listed by a gather of that process)."""
    monkeypatch.setattr(readahead, "_pending", {})
    ahead = None
    if readahead.start(["inspect", str(pid)]):
        ahead = inspect_process(pid, sample=0)
        assert not readahead.pending(pid, Proc())
    proc = CountingProc()
    plain = inspect_process(pid, sample=0, proc=proc)
    return ahead or plain, plain, proc.listed


def test_read_ahead_matches_plain_path_on_the_zoo(tmp_path, monkeypatch, speedups):
    # The zoo has a hole in its fd table (fd 27 was closed): the st_size guess finds the fd
    # above the count by reading just above it, without listing the table, and still finds
    # every fd, with nothing counted as vanished (test_speedups has a table that needs the
    # listing: fds far above the count).
    with Target(ZOO, str(tmp_path)) as target:
        target.wait_sleeping()
        fast, plain, listed = _both_ways(monkeypatch, target.pid)
    assert listed == 0
    assert 27 not in [e.fd for e in plain.fds] and plain.fds[-1].fd > 27
    assert _without_cpu(fast.to_json()) == _without_cpu(plain.to_json())
    assert not any("vanished" in n or "closed or exited" in n for n in fast.notes)


def test_read_ahead_matches_plain_path_on_many_fds(monkeypatch, speedups):
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


def test_flags_above_the_limit_are_read_where_findings_need_them(monkeypatch, speedups):
    """Above FLAGS_ALL_MAX open fds, fdinfo is read for epoll fds, path fds and edge-triggered
    targets only, and the report says so."""
    monkeypatch.setattr(gather, "FLAGS_ALL_MAX", 1000)
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        rep = inspect_process(target.pid, sample=0)
        full = inspect_process(target.pid, sample=0, flags="all")
    with_flags = {e.fd for e in rep.fds if e.flags is not None}
    et = {r.tfd for s in rep.epoll for r in s.registrations if r.mask & (1 << 31)}
    assert len(et) == 50 and et <= with_flags
    assert {e.fd for e in rep.fds if e.type in ("epoll", "file", "chr")} <= with_flags
    assert len(with_flags) < len(rep.fds) and any("flags/pos read for" in n for n in rep.notes)
    assert all(e.flags is not None for e in full.fds)


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
    """/proc/net/tcp answers a read with whole records only: a short read is not its end. Our
    own 60 listeners (over 4 KiB of rows) must all be in the text, whatever else comes and goes
    in the namespace meanwhile."""
    import socket

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(60)]
    try:
        inodes = {os.fstat(s.fileno()).st_ino for s in listeners}
        texts, _ = Proc().read_many("self", "net", names=["tcp"])
        text = texts["tcp"]
        listed = {int(line.split()[9]) for line in text.splitlines()[1:]}
        assert len(text) > 4096 and text.endswith("\n")
        assert inodes <= listed
    finally:
        for s in listeners:
            s.close()


# fd 3 moved to `where` (dup2, then close): a hole below the count, one fd above it.
MOVED = """
import json, os, sys, time
keep = [os.open("/dev/null", os.O_RDONLY) for _ in range(40)]
where = int(sys.argv[1]) if sys.argv[1] != "count" else len(os.listdir("/proc/self/fd")) - 1
os.dup2(3, where)
os.close(3)
print(json.dumps({"fds": [fd for fd in range(where + 1) if fd != 3 and fd not in range(43, where)]}),
      flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("where, listed", [("count", 0), ("900", 1)])
def test_a_hole_is_looked_past_and_a_far_fd_listed(where, listed):
    """fd_links reads 0..count-1, then just above the count for each hole it found; an fd far
    above the count is found by listing the directory."""
    with Target(MOVED, where) as target:
        proc = CountingProc()
        fds, links, gone = gather.fd_links(proc, target.pid)
    assert proc.listed == listed
    assert fds == target.info["fds"] and len(links) == len(fds) and gone == 0
