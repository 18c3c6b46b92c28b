"""io_uring: the fdinfo parser on text captured from a 6.18 kernel (and the older forms), live
rings inspected field by field, the findings on rings in known bad states and on a healthy
server, the io_uring echo server under verified load with resets, and the probe's exit 5 where
io_uring is refused (a seccomp filter the test installs in a child)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fdscope.parse.uring import opcode_name, parse_uring
from tests.inspect_support import Target
from tests.servers_support import expected, random_payload, recv_exactly, reset, server
from tests.uring_support import LIVE_RINGS, needs_uring

# Captured from /proc/self/fdinfo/RING on 6.18.44 (x86_64): 3 NOPs written and published, not
# submitted.
PENDING = """pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t47786
SqMask:\t0x7
SqHead:\t0
SqTail:\t3
CachedSqHead:\t0
CqMask:\t0xf
CqHead:\t0
CqTail:\t0
CachedCqTail:\t0
SQEs:\t3
    0: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:1
    1: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:2
    2: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:3
CQEs:\t0
SqThread:\t-1
SqThreadCpu:\t-1
SqTotalTime:\t0
SqWorkTime:\t0
UserFiles:\t0
UserBufs:\t0
PollList:
CqOverflowList:
NAPI:\tdisabled
"""

# The same kernel: NOPs completed and not reaped, a READ waiting on the poll list, 2 of 4
# fixed-file slots filled (empty slots are not listed), and an SQPOLL thread.
COMPLETED = """pos:\t0
flags:\t02000002
mnt_id:\t17
ino:\t47786
SqMask:\t0x7
SqHead:\t4
SqTail:\t4
CachedSqHead:\t4
CqMask:\t0xf
CqHead:\t0
CqTail:\t3
CachedCqTail:\t3
SQEs:\t0
CQEs:\t3
    0: user_data:1, res:0, flag:0
    1: user_data:2, res:0, flag:0
    2: user_data:3, res:-11, flag:2
SqThread:\t8830
SqThreadCpu:\t0
SqTotalTime:\t1200
SqWorkTime:\t300
UserFiles:\t4
    0: pipe:[317544]
    1: pipe:[317544]
UserBufs:\t1
    0: 0x7f0000001000/4096
PollList:
  op=22, task_works=0
CqOverflowList:
  user_data=9, res=0, flags=0
NAPI:\tenabled
napi tracking:\tdynamic
napi_busy_poll_dt:\t50
"""

# The first 5.16 form (83f84356bc8f): indices masked, no SqMask, numeric opcodes.
MASKED = """pos:\t0
flags:\t02000002
mnt_id:\t15
SqHead:\t1
SqTail:\t3
CachedSqHead:\t1
CqHead:\t0
CqTail:\t0
CachedCqTail:\t0
    1: opcode:22, fd:5, flags:0, user_data:7
SqThread:\t-1
SqThreadCpu:\t-1
UserFiles:\t0
UserBufs:\t0
PollList:
"""

# 5.10: no ring indices at all; a personality with its credentials.
OLD = """pos:\t0
flags:\t02000002
mnt_id:\t13
SqThread:\t-1
SqThreadCpu:\t-1
UserFiles:\t0
UserBufs:\t0
Personalities:
    1
\tUid:\t0\t\t0\t\t0\t\t0
\tGid:\t0\t\t0\t\t0\t\t0
\tGroups:\t0
\tCapEff:\t000001ffffffffff
PollList:
  op=13, task_works=1
SomethingNew:\t42
"""


def test_parse_pending_field_by_field() -> None:
    u = parse_uring(PENDING)
    assert u.form == "raw"
    assert (u.sq_mask, u.sq_head, u.sq_tail, u.cached_sq_head) == (7, 0, 3, 0)
    assert (u.cq_mask, u.cq_head, u.cq_tail, u.cached_cq_tail) == (15, 0, 0, 0)
    assert (u.sq_entries, u.cq_entries, u.sq_pending, u.cq_pending) == (8, 16, 3, 0)
    assert [(e.index, e.opcode, e.fd, e.user_data) for e in u.sqes] == \
        [(0, "NOP", -1, 1), (1, "NOP", -1, 2), (2, "NOP", -1, 3)]
    assert u.sqes[0].flags == 0 and u.sqes[0].addr == 0 and u.sqes[0].buf_index == 0
    assert u.cqes == ()
    assert (u.sq_thread, u.sq_thread_cpu, u.sq_total_time, u.sq_work_time) == (-1, -1, 0, 0)
    assert not u.sqpoll
    assert (u.user_files, u.user_bufs, u.files, u.bufs) == (0, 0, (), ())
    assert u.poll_list == () and u.cq_overflow_list == ()
    assert u.napi == "disabled" and u.unknown == ()


def test_parse_completed_lists() -> None:
    u = parse_uring(COMPLETED)
    assert (u.sq_pending, u.cq_pending) == (0, 3)
    assert [(e.index, e.user_data, e.res, e.flags) for e in u.cqes] == \
        [(0, 1, 0, 0), (1, 2, 0, 0), (2, 3, -11, 2)]
    assert u.sqpoll and (u.sq_thread, u.sq_thread_cpu) == (8830, 0)
    assert (u.sq_total_time, u.sq_work_time) == (1200, 300)
    assert u.user_files == 4 and u.files == ((0, "pipe:[317544]"), (1, "pipe:[317544]"))
    assert u.user_bufs == 1 and u.bufs == ((0, 0x7F0000001000, 4096),)
    assert [(p.opcode, p.task_works) for p in u.poll_list or ()] == [(22, 0)]
    assert opcode_name(22) == "READ" and opcode_name(999) == "op 999"
    assert [(o.user_data, o.res, o.flags) for o in u.cq_overflow_list or ()] == [(9, 0, 0)]
    assert u.napi == "enabled"
    assert u.napi_fields == (("napi tracking", "dynamic"), ("napi_busy_poll_dt", "50"))
    assert u.unknown == ()


def test_parse_masked_form_says_so() -> None:
    u = parse_uring(MASKED)
    assert u.form == "masked" and u.sq_mask is None
    assert (u.sq_head, u.sq_tail) == (1, 3)
    # Masked indices cannot tell a full ring from an empty one: no pending count is invented.
    assert u.sq_pending is None
    # The SQE line has no list header in this form: kept raw, not guessed.
    assert u.unknown == ("    1: opcode:22, fd:5, flags:0, user_data:7",)


def test_parse_old_kernel_and_unknown_lines() -> None:
    u = parse_uring(OLD)
    assert u.form is None and u.sq_head is None and u.sq_pending is None
    assert u.personalities == (1,)
    assert [(p.opcode, p.task_works) for p in u.poll_list or ()] == [(13, 1)]
    assert u.cq_overflow_list is None  # the kernel printed no such list: unknown, not empty
    assert u.unknown == ("SomethingNew:\t42",)


def test_empty_slots_of_older_kernels_are_not_counted_as_used() -> None:
    from fdscope.inspect.model import InspectReport
    from fdscope.inspect.uring import findings, rings

    lines = [f"{i:5d}: {'<none>' if i % 2 else 'sock'}" for i in range(20)]
    text = "UserFiles:\t20\n" + "\n".join(lines) + "\nUserBufs:\t0\n"
    ring = rings({5: text}, [])
    assert len(ring[0].info.files) == 20
    assert findings(InspectReport(pid=1, name="x", cmdline=[], state="S"), ring) == []


def test_parse_big_entries_and_bad_numbers() -> None:
    text = ("SqMask:\t0x3\nSqHead:\t4294967295\nSqTail:\t1\nSQEs:\t2\n"
            "    3: opcode:READ_FIXED, fd:4, flags:1, off:0, addr:0x10, rw_flags:0x0, "
            "buf_index:2 user_data:5, e0:0x1, e1:0x2\n"
            "CQEs:\t1\n    0: user_data:1, res:0, flag:0, extra1:7, extra2:8\n"
            "CqHead:\t١\n")
    u = parse_uring(text)
    assert u.sq_pending == 2  # the kernel's count
    assert u.sqes[0].opcode == "READ_FIXED" and u.sqes[0].extra == (("e0", "0x1"), ("e1", "0x2"))
    assert u.cqes[0].extra == (("extra1", "7"), ("extra2", "8"))
    # A wrapped u32 counter: tail - head modulo 2^32.
    assert parse_uring("SqMask:\t0x3\nSqHead:\t4294967295\nSqTail:\t1\n").sq_pending == 2
    assert u.cq_head is None and u.unknown == ("CqHead:\t١",)  # Arabic-Indic digit: no number


# ---------------------------------------------------------------- live rings


@needs_uring
def test_ring_indices_wrap_and_completions_come_back_in_order() -> None:
    """fdscope.uring itself: 100 NOPs through an 8-entry SQ and 16-entry CQ, in batches of 7,
    so both rings wrap many times; every CQE comes back once, in submission order."""
    from fdscope.uring import OP, Ring

    seen = []
    with Ring(8) as ring:
        for start in range(0, 100, 7):
            batch = range(start, min(start + 7, 100))
            for i in batch:
                ring.queue(OP["NOP"], user_data=i)
            assert ring.submit(wait=len(batch)) == len(batch)
            seen += [c.user_data for c in ring.completions()]
        assert ring.completions() == []
        assert (ring.sq_head, ring.cq_head, ring.cq_tail) == (100, 100, 100)
    assert seen == list(range(100))


@needs_uring
@pytest.mark.timeout(60)
def test_live_ring_inspected_field_by_field() -> None:
    from fdscope.inspect import inspect_process

    with Target(LIVE_RINGS, "waiter") as t:
        t.wait_sleeping()
        doc = inspect_process(t.pid, sample=0).to_json()
    busy_fd, over_fd = t.info["busy"], t.info["over"]
    rings = {r["fd"]: r for r in doc["io_uring"]}
    assert set(rings) == {busy_fd, over_fd}  # one entry per ring fd: no duplicate fds
    assert {e["fd"]: e["type"] for e in doc["fds"]}[busy_fd] == "io_uring"
    busy = rings[busy_fd]
    assert busy["form"] == "raw"
    assert busy["sq"] == {"entries": 8, "mask": 7, "head": 1, "tail": 4, "cached_head": 1,
                          "pending": 3}
    assert busy["cq"] == {"entries": 16, "mask": 15, "head": 0, "tail": 0, "cached_tail": 0,
                          "pending": 0}
    assert [(e["index"], e["opcode"], e["fd"], e["user_data"]) for e in busy["sqes"]] == \
        [(1, "NOP", -1, 100), (2, "NOP", -1, 101), (3, "NOP", -1, 102)]
    assert busy["cqes"] == []
    assert busy["poll_list"] == [{"op": 22, "opcode": "READ", "task_works": 0}]
    assert busy["user_files"] == 4
    assert [f["index"] for f in busy["files"]] == [0, 1]
    assert all(f["name"].startswith("pipe:[") for f in busy["files"])
    assert busy["sq_thread"] == -1 and busy["cq_overflow_list"] == []
    assert len(busy["waiters"]) == 1 and busy["min_complete"] == 1
    over = rings[over_fd]
    assert over["cq"]["entries"] == 2 and over["cq"]["pending"] == 2
    assert [e["user_data"] for e in over["cqes"]] == [200, 201]
    assert [o["user_data"] for o in over["cq_overflow_list"]] == [202, 203]
    assert over["waiters"] == []
    # io_model: the waiter in io_uring_enter on the busy ring.
    assert doc["io_model"]["kind"] == "io_uring"
    assert doc["io_model"]["summary"].startswith(
        f"1 thread in io_uring_enter (min_complete=1) on fd {busy_fd}, 3 SQEs pending")
    codes = {(f["code"], f["level"]) for f in doc["findings"]}
    assert ("uring_cq_overflow", "warn") in codes
    # 3 SQEs pending, but a thread waits in io_uring_enter on that ring: nothing to say.
    assert not any(c.startswith("uring_sq_") for c, _ in codes)


@needs_uring
@pytest.mark.timeout(60)
def test_inspect_cli_shows_the_ring_section(invoke) -> None:  # type: ignore[no-untyped-def]
    with Target(LIVE_RINGS, "waiter") as t:
        t.wait_sleeping()
        text = invoke("inspect", str(t.pid), "--section", "io_uring,io_model").output
        doc = json.loads(invoke("inspect", str(t.pid), "--section", "io_uring", "--json").output)
    busy = t.info["busy"]
    assert f"io_uring fd {busy}\n  SQ 3/8 pending (head 1, tail 4)" in text
    assert "2/4 fixed files; 1 waiting for readiness; waited on by thread" in text
    assert f"io_uring: 1 thread in io_uring_enter (min_complete=1) on fd {busy}" in text
    assert [r["fd"] for r in doc["io_uring"]] == sorted([busy, t.info["over"]])
    assert "fds" not in doc and "threads" not in doc


@needs_uring
@pytest.mark.timeout(60)
def test_no_ring_no_section(invoke) -> None:  # type: ignore[no-untyped-def]
    res = invoke("inspect", str(os.getpid()), "--section", "io_uring,io_model", "--sample", "0")
    assert res.exit_code == 0 and "io_uring fd" not in res.output


@needs_uring
@pytest.mark.timeout(60)
def test_full_sq_without_a_waiter_is_flagged() -> None:
    from fdscope.inspect import inspect_process

    with Target(LIVE_RINGS, "full") as t:
        t.wait_sleeping()
        doc = inspect_process(t.pid, sample=0).to_json()
    full = [f for f in doc["findings"] if f["code"] == "uring_sq_full_no_waiter"]
    assert [(f["level"], f["fds"]) for f in full] == [("warn", [t.info["full"]])]
    assert doc["io_model"]["kind"] != "io_uring"  # nobody waits in io_uring_enter


@needs_uring
@pytest.mark.timeout(60)
def test_io_threads_are_counted_not_blocked() -> None:
    """An SQPOLL ring and a request forced to an io-wq worker: iou-sqp-PID and iou-wrk-PID
    show io_uring_setup/io_uring_enter in their syscall file; they must not read as waiters."""
    from fdscope.inspect import inspect_process

    script = textwrap.dedent(r"""
        import json, os, threading, time
        from fdscope.uring import OP, Buffer, Ring, IORING_SETUP_SQPOLL
        sq = Ring(8, flags=IORING_SETUP_SQPOLL)
        r = Ring(8)
        rd, wr = os.pipe()
        buf = Buffer(8)
        r.queue(OP["READ"], rd, addr=buf.addr, length=8, user_data=1, flags=1 << 4)  # ASYNC
        r.submit()
        threading.Thread(target=lambda: r.enter(0, 1), daemon=True).start()
        time.sleep(0.2)
        print(json.dumps({"sq": sq.fd, "r": r.fd}), flush=True)
        while True:
            time.sleep(3600)
    """)
    with Target(script) as t:
        t.wait_sleeping()
        doc = inspect_process(t.pid, sample=0).to_json()
    names = [th["name"] for th in doc["threads"]]
    assert any(n.startswith("iou-sqp-") for n in names)
    assert any(n.startswith("iou-wrk-") for n in names)
    rings = {r["fd"]: r for r in doc["io_uring"]}
    assert rings[t.info["sq"]]["sq_thread"] > 0
    assert len(rings[t.info["r"]]["waiters"]) == 1  # the user thread only, not the worker
    summary = doc["io_model"]["summary"]
    assert doc["io_model"]["kind"] == "io_uring"
    assert summary.startswith(f"1 thread in io_uring_enter (min_complete=1) on fd {t.info['r']}")
    assert "kernel threads: 1 SQ poll, 1 io-wq worker" in summary
    assert not [f for f in doc["findings"] if f["level"] in ("warn", "crit")]


FILES = textwrap.dedent(r"""
    import json, os, time
    from fdscope.uring import Ring
    nearly, half = Ring(4), Ring(4)
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(19)]
    nearly.register_files(fds + [-1])          # 19 of 20 slots
    half.register_files(fds[:10] + [-1] * 10)  # 10 of 20 slots
    print(json.dumps({"nearly": nearly.fd, "half": half.fd}), flush=True)
    while True:
        time.sleep(3600)
""")


@needs_uring
@pytest.mark.timeout(60)
def test_fixed_file_table_near_its_size_is_info_only() -> None:
    from fdscope.inspect import inspect_process

    with Target(FILES) as t:
        t.wait_sleeping()
        doc = inspect_process(t.pid, sample=0).to_json()
    rings = {r["fd"]: r for r in doc["io_uring"]}
    assert rings[t.info["nearly"]]["user_files"] == 20
    assert len(rings[t.info["nearly"]]["files"]) == 19
    # 6.18 prints the path (seq_file_path); older kernels the dentry name ("null").
    assert {f["name"] for f in rings[t.info["nearly"]]["files"]} <= {"/dev/null", "null"}
    assert len(rings[t.info["half"]]["files"]) == 10
    near = [f for f in doc["findings"] if f["code"] == "uring_files_near_full"]
    assert [(f["level"], f["fds"]) for f in near] == [("info", [t.info["nearly"]])]


# A parent creates an SQPOLL ring and forks; the child keeps the fd and writes 2 SQEs for the
# SQ poll thread (the parent's) to consume, then sleeps; the parent exits when told to.
FORKED_SQPOLL = textwrap.dedent(r"""
    import json, os, sys, time
    from fdscope.uring import IORING_SETUP_SQPOLL, OP, Ring
    ring = Ring(8, flags=IORING_SETUP_SQPOLL)
    sqp = [t for t in os.listdir("/proc/self/task") if int(t) != os.getpid()]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)                      # wait for the parent to exit
        time.sleep(0.3)
        ring.queue(OP["NOP"], user_data=1)
        ring.queue(OP["NOP"], user_data=2)
        sys.stdout.write("exited\n"); sys.stdout.flush()
        while True:
            time.sleep(3600)
    print(json.dumps({"child": child, "ring": ring.fd, "sqp": [int(t) for t in sqp]}),
          flush=True)
    sys.stdin.readline()                   # the test says when to exit
    os._exit(0)
""")


@needs_uring
@pytest.mark.timeout(60)
def test_ring_of_another_process_then_its_creator_exits() -> None:
    """While the creator lives, the child's ring is served by the creator's SQ poll thread
    (info: uring_foreign_submitter). Once the creator exits the thread goes (SqThread -1) and
    SQEs the child writes are never consumed (info: uring_sq_unsubmitted)."""
    from fdscope.inspect import inspect_process

    proc = subprocess.Popen([sys.executable, "-c", FORKED_SQPOLL], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert proc.stdout is not None and proc.stdin is not None
        info = json.loads(proc.stdout.readline())
        child, fd = info["child"], info["ring"]
        doc = inspect_process(child, sample=0).to_json()
        (ring,) = [r for r in doc["io_uring"] if r["fd"] == fd]
        assert ring["sq_thread"] in info["sqp"]  # the parent's iou-sqp thread
        foreign = [f for f in doc["findings"] if f["code"] == "uring_foreign_submitter"]
        assert [(f["level"], f["fds"]) for f in foreign] == [("info", [fd])]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "exited\n"  # from the child, once the parent is gone
        proc.wait(10)
        time.sleep(0.2)
        doc = inspect_process(child, sample=0).to_json()
        (ring,) = [r for r in doc["io_uring"] if r["fd"] == fd]
        assert ring["sq_thread"] == -1 and ring["sq"]["pending"] == 2
        codes = {f["code"]: f["level"] for f in doc["findings"]}
        assert codes.get("uring_sq_unsubmitted") == "info"
        assert "uring_foreign_submitter" not in codes
    finally:
        if child is not None:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the io_uring server


@needs_uring
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_server_under_load_with_resets_loses_nothing_and_reads_as_io_uring() -> None:
    from fdscope.inspect import inspect_process
    from fdscope.load import LoadConfig, run_load

    with server("io_uring") as srv:
        stop = threading.Event()
        resets = [0]

        def resetter() -> None:
            while not stop.is_set():
                victim = socket.create_connection(srv.addr, timeout=5)
                victim.sendall(random_payload(300_000, seed=resets[0]))
                recv_exactly(victim, 1000)
                reset(victim)  # RST while the server still sends the 300 KB reply
                resets[0] += 1

        chaos = threading.Thread(target=resetter, daemon=True)
        chaos.start()
        result: dict = {}
        cfg = LoadConfig(host=srv.host, port=srv.port, connections=20, messages=8,
                         size_min=1, size_max=300 * 1024, seed=16, stall_timeout=30)
        loader = threading.Thread(target=lambda: result.update(run_load(cfg)), daemon=True)
        loader.start()
        kinds = []
        doc: dict = {}
        deadline = time.monotonic() + 20
        while loader.is_alive() and time.monotonic() < deadline:
            doc = inspect_process(srv.pid, sample=0).to_json()
            kinds.append(doc["io_model"]["kind"])
            if kinds[-1] == "io_uring":
                break
            time.sleep(0.05)
        loader.join(120)
        stop.set()
        chaos.join(30)
        assert result["ok"], result.get("verdict")
        assert result["messages_ok"] == 160 and result["bytes_verified"] == result["bytes_sent"]
        assert resets[0] >= 1
        # Idle again: one ring, the loop asleep in io_uring_enter waiting for one completion.
        after = inspect_process(srv.pid, sample=0).to_json()
        small = random_payload(5000, seed=99)
        with socket.create_connection(srv.addr, timeout=5) as c:
            c.sendall(small)
            assert recv_exactly(c, len(small)) == expected(small)
        rc, stopped = srv.stop()
        err = srv.stderr()
    assert "io_uring" in kinds or after["io_model"]["kind"] == "io_uring", (kinds, after["io_model"])
    assert after["io_model"]["kind"] == "io_uring", after["io_model"]
    assert "in io_uring_enter (min_complete=1)" in after["io_model"]["summary"]
    assert len(after["io_uring"]) == 1
    # A healthy io_uring server raises nothing above info.
    assert not [f for f in after["findings"] if f["level"] in ("warn", "crit")], after["findings"]
    assert rc == 0 and "Traceback" not in err, err
    assert stopped is not None
    assert stopped["closed"].get("ECONNRESET", 0) + stopped["closed"].get("EPIPE", 0) >= 1


@needs_uring
def test_server_ring_falls_back_without_defer_taskrun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels before 6.1 refuse SINGLE_ISSUER|DEFER_TASKRUN with EINVAL: the server then
    takes a plain ring; any other refusal is passed on."""
    import errno

    from fdscope.servers import io_uring as srv
    from fdscope.uring import Ring, Unavailable

    made = []

    def old_kernel(entries: int, flags: int = 0, cq_entries: int = 0) -> Ring:
        if flags:
            raise Unavailable(errno.EINVAL, "io_uring_setup: EINVAL")
        made.append(flags)
        return Ring(entries, flags, cq_entries)

    monkeypatch.setattr(srv, "Ring", old_kernel)
    with srv._ring() as ring:
        assert ring.cq_entries == srv.CQ_ENTRIES and made == [0]

    def refused(entries: int, flags: int = 0, cq_entries: int = 0) -> Ring:
        raise Unavailable(errno.EPERM, "io_uring_setup: EPERM")

    monkeypatch.setattr(srv, "Ring", refused)
    with pytest.raises(Unavailable, match="EPERM"):
        srv._ring()


# ---------------------------------------------------------------- the probe where refused

# A seccomp filter that fails io_uring_setup (425) with ERRNO, installed in a child before it
# runs `fdscope probe io_uring` (seccomp(2), SECCOMP_RET_ERRNO; prctl(2) PR_SET_NO_NEW_PRIVS).
SECCOMP_CHILD = textwrap.dedent(r"""
    import ctypes, struct, sys
    errno_value = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = (ctypes.c_int,) + (ctypes.c_ulong,) * 4
    def ins(code, jt, jf, k):
        return struct.pack("=HBBI", code, jt, jf, k)
    LD, JEQ, RET = 0x20, 0x15, 0x06
    prog = b"".join([
        ins(LD, 0, 0, 0),                          # seccomp_data.nr
        ins(JEQ, 0, 1, 425),                       # io_uring_setup?
        ins(RET, 0, 0, 0x00050000 | errno_value),  # SECCOMP_RET_ERRNO | errno
        ins(RET, 0, 0, 0x7fff0000),                # SECCOMP_RET_ALLOW
    ])
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("=HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    assert libc.prctl(38, 1, 0, 0, 0) == 0               # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
    sys.argv = ["fdscope", *sys.argv[2:]]
    from fdscope.cli.main import main
    main()
""")


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter checks x86_64 numbers")
@pytest.mark.parametrize("err,why", [(1, "EPERM"), (38, "ENOSYS")])
@pytest.mark.parametrize("command", [["probe", "io_uring"], ["serve", "io_uring", "--json"],
                                     ["bench", "scaling", "--mechanisms", "io_uring"]])
@pytest.mark.timeout(60)
def test_exit_5_with_the_reason_where_io_uring_is_refused(err: int, why: str,
                                                          command: list[str]) -> None:
    res = subprocess.run([sys.executable, "-c", SECCOMP_CHILD, str(err), *command],
                         capture_output=True, text=True, timeout=50)
    assert res.returncode == 5, (res.stdout, res.stderr)
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"io_uring_setup: {why}" in line
    assert res.stdout == ""


@pytest.mark.parametrize("err,disabled,says", [
    (1, 2, "kernel.io_uring_disabled = 2"),
    (1, 1, "kernel.io_uring_disabled = 1 (1: only members of kernel.io_uring_group"),
    (1, 0, "seccomp"),
    (38, 0, "ENOSYS: this kernel has no io_uring"),
    (12, 0, "RLIMIT_MEMLOCK"),
])
def test_unavailable_reasons(monkeypatch: pytest.MonkeyPatch, err: int, disabled: int,
                             says: str) -> None:
    """The sysctl is machine-wide (not for a test to flip): its reading is replaced here; the
    EPERM and ENOSYS paths also run for real under seccomp above."""
    from fdscope import uring

    monkeypatch.setattr(uring, "_sysctl_disabled", lambda: disabled)
    assert says in uring.why_unavailable(OSError(err, os.strerror(err)))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter checks x86_64 numbers")
@pytest.mark.timeout(120)
def test_bench_reports_io_uring_unavailable_and_measures_the_rest() -> None:
    res = subprocess.run([sys.executable, "-c", SECCOMP_CHILD, "1", "bench", "scaling",
                          "--idle", "1", "--seconds", "0.05", "--min-events", "10", "--json"],
                         capture_output=True, text=True, timeout=110)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    rows = {r["mechanism"]: r for r in doc["rows"]}
    assert rows["io_uring"]["status"] == "unavailable"
    assert "io_uring_setup: EPERM" in rows["io_uring"]["reason"]
    assert rows["epoll"]["status"] == "measured"


@needs_uring
def test_probe_matches_on_this_kernel(invoke) -> None:  # type: ignore[no-untyped-def]
    res = invoke("probe", "io_uring", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    (probe,) = doc["probes"]
    assert probe["name"] == "io_uring" and probe["verdict"] == "matches", probe
    assert [s["key"] for s in probe["steps"]][:3] == ["empty", "queued_tail", "queued_sqes"]
