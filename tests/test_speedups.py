"""The C accelerator (csrc/fdscope_speedups.c) against its pure-Python twins: on live /proc text
of processes the tests start, on hypothesis-generated input (where the input is in the form a C
parser knows, it must answer, not decline), and end to end through the CLI with its read-ahead
(fdscope.inspect.readahead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import require_speedups
from hypothesis import given, settings
from hypothesis import strategies as st
from inspect_support import MANY, ZOO, Target
from privilege_support import run_as_nobody

from fdscope import speedups
from fdscope.inspect import gather, readahead
from fdscope.inspect.model import FdEntry, Registration, SocketInfo
from fdscope.inspect.report import inspect_process
from fdscope.parse.fdinfo import epoll_rows
from fdscope.parse.net import socket_rows
from fdscope.proc import Proc
from fdscope.render.inspect import FD_KEYS, REG_KEYS, _fd_rows, _reg_rows

PY = speedups.Backend()


@pytest.fixture
def C():
    return require_speedups()


def test_keys_follow_the_namedtuple_fields():
    assert [k if isinstance(k, str) else k and k[0] for k in FD_KEYS] == \
        [f if f != "flags_raw" else None for f in FdEntry._fields]
    assert FD_KEYS[6][1] == SocketInfo._fields
    assert REG_KEYS == Registration._fields


def test_the_backend_is_chosen_once_and_named():
    assert speedups.backend.name in ("c", "python")
    assert (speedups.backend.name == "c") == (speedups.load_c() is not None)


def test_live_reads_and_parses_match_python(C, tmp_path):
    with Target(ZOO, str(tmp_path)) as target:
        target.wait_sleeping()
        pid = target.pid
        names = sorted(os.listdir(f"/proc/{pid}/fd"), key=int) + ["999999"]
        dir_fd = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        try:
            texts, errors = C.readlinkat_many(dir_fd, names)
            assert (texts, errors) == PY.readlinkat_many(dir_fd, names)
        finally:
            os.close(dir_fd)
        assert texts[:-1] == [os.readlink(f"/proc/{pid}/fd/{n}") for n in names[:-1]]
        assert texts[-1] is None and errors == [(len(names) - 1, 2)]  # ENOENT
        dir_fd = os.open(f"/proc/{pid}/fdinfo", os.O_RDONLY | os.O_DIRECTORY)
        try:
            infos, gone = C.read_many(dir_fd, names)
            assert (infos, gone) == PY.read_many(dir_fd, names)
        finally:
            os.close(dir_fd)
        assert gone == [(len(names) - 1, 2)] and all(t.startswith("pos:") for t in infos[:-1])
        epfds = [int(n) for n, t in zip(names, texts, strict=False) if t == gather.EPOLL_LINK]
        assert epfds
        proc = Proc()
        for epfd in epfds:
            text = proc.read_text(pid, "fdinfo", epfd)
            rows = C.epoll_rows(text)
            assert rows is not None and rows == epoll_rows(text) and rows
        for table in gather.NET_TABLES:  # timers tick: both parse the same text
            try:
                text = proc.read_text(pid, "net", table)
            except Exception:  # noqa: BLE001 - absent table (no IPv6, module not loaded)
                continue
            got = C.net_rows(table, text, None)
            if table in ("netlink", "packet"):
                assert got is None  # the Python parsers only
                continue
            assert got is not None and got == socket_rows(table, text, None)
            assert got or table not in ("tcp", "unix")  # the zoo has both
        report = inspect_process(pid, sample=0)
    rows = report.listed_fds()
    assert C.rows_json(rows, FD_KEYS, ",\n") == ",\n".join(_fd_rows(rows, {}, {None: "null"}))
    regs = [r for s in report.epoll for r in s.registrations]
    assert C.rows_json(regs, REG_KEYS, ",") == ",".join(_reg_rows(regs))


def _maybe_damaged(draw, lines):
    """(the table text of `lines`, whether it was damaged): half the time a few random
    characters are put in somewhere."""
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        extra = draw(st.text(max_size=5))
        return text[:at] + extra + text[at:], bool(extra)
    return text, False


def _first_row_inode(text, column, filtered):
    """{the inode in `column` of the table's first row} (when it has one), or None unfiltered."""
    if not filtered:
        return None
    return {int(line.split()[column]) for line in text.splitlines()[1:2]
            if len(line.split()) > column and line.split()[column].isdigit()}


_DEC = st.integers(0, 2**31 - 1)
_HEX = st.integers(0, 2**80).map(lambda n: f"{n:x}")


@st.composite
def _epoll_text(draw):
    lines = [f"pos:\t{draw(_DEC)}", f"flags:\t{draw(st.integers(0, 0o7777777)):o}",
             f"mnt_id:\t{draw(_DEC)}", f"ino:\t{draw(_DEC)}"]
    in_range = True
    for _ in range(draw(st.integers(0, 6))):
        mask, data, ino = draw(_HEX), draw(_HEX), draw(_HEX)
        sdev = draw(st.integers(0, 2**36))
        in_range &= max(len(mask), len(data), len(ino)) <= 16 and sdev < 2**32
        lines.append(f"tfd: {draw(_DEC):8d} events: {mask:>8} data: {data:>16}  "
                     f"pos:{draw(st.integers(-5, 2**40))} ino:{ino} sdev:{sdev:x}")
    text, damaged = _maybe_damaged(draw, lines)
    return text, not damaged and in_range


@settings(max_examples=400, deadline=None)
@given(_epoll_text())
def test_epoll_rows_agree_with_python_and_answer_the_kernel_form(case):
    """Wherever C answers it agrees with the Python twin; on text in the kernel's form (64-bit
    fields, 32-bit sdev) it must answer."""
    text, kernel_form = case
    C = require_speedups()
    try:
        expected = epoll_rows(text)
    except (OverflowError, ValueError):
        expected = "error"  # os.makedev on an sdev wider than 32 bits
    got = C.epoll_rows(text)
    if kernel_form:
        assert got is not None
    if got is not None:
        assert got == expected


_ADDR4 = st.integers(0, 2**32 - 1).map(lambda n: f"{n:08X}")
_ADDR6 = st.integers(0, 2**128 - 1).map(lambda n: f"{n:032X}")


@st.composite
def _inet_text(draw):
    rows = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
            "timeout inode"]
    addr = draw(st.sampled_from([_ADDR4, _ADDR6]))
    named = True
    for i in range(draw(st.integers(0, 5))):
        state = draw(st.integers(0, 15))
        named &= 1 <= state <= 13
        rows.append(
            f"{i:4d}: {draw(addr)}:{draw(st.integers(0, 65535)):04X} "
            f"{draw(st.sampled_from(['00000000', '0' * 32, draw(addr)]))}:"
            f"{draw(st.integers(0, 65535)):04X} {state:02X} "
            f"{draw(st.integers(0, 2**32 - 1)):08X}:{draw(st.integers(0, 2**32 - 1)):08X} "
            f"00:00000000 00000000 {draw(st.integers(0, 70000)):5d}        0 "
            f"{draw(st.integers(0, 2**40))} 1 0000000000000000 100 0 0 10 0")
    text, damaged = _maybe_damaged(draw, rows)
    return text, not damaged and named


def _net_rows_agree(C, table, text, inodes, kernel_form):
    """C.net_rows agrees with its twin wherever it answers, and answers the kernel's form."""
    got = C.net_rows(table, text, inodes)
    if kernel_form:
        assert got is not None
    if got is None:
        return
    assert got == socket_rows(table, text, inodes)


@settings(max_examples=300, deadline=None)
@given(_inet_text(), st.sampled_from(["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]),
       st.booleans())
def test_net_rows_of_inet_tables_agree_with_python(case, table, filtered):
    text, kernel_form = case
    C = require_speedups()
    _net_rows_agree(C, table, text, _first_row_inode(text, 9, filtered), kernel_form)


@st.composite
def _unix_text(draw):
    rows = ["Num       RefCount Protocol Flags    Type St Inode Path"]
    named = True
    for _ in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from(["", " /run/x.sock", " @abstract", " /tmp/a b"]))
        flags, state = draw(st.sampled_from([0, 0x10000, 0x10001])), draw(st.integers(0, 6))
        named &= state < 5 or bool(flags & 0x10000)
        rows.append(f"{draw(st.integers(0, 2**64 - 1)):016x}: {draw(st.integers(0, 9)):08X} "
                    f"00000000 {flags:08X} "
                    f"{draw(st.sampled_from([1, 2, 5])):04X} {state:02X} "
                    f"{draw(st.integers(0, 2**40)):5d}{path}")
    text, damaged = _maybe_damaged(draw, rows)
    return text, not damaged and named


@settings(max_examples=300, deadline=None)
@given(_unix_text(), st.booleans())
def test_net_rows_of_the_unix_table_agree_with_python(case, filtered):
    text, kernel_form = case
    C = require_speedups()
    _net_rows_agree(C, "unix", text, _first_row_inode(text, 6, filtered), kernel_form)


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
_OPT_INT = st.none() | st.integers(0, 2**70)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.integers(0, 10**6), st.sampled_from(["socket", "pipe", "file"]), _TEXT, _OPT_INT,
    st.none() | st.lists(_TEXT, max_size=3).map(tuple), _OPT_INT,
    st.none() | st.tuples(_TEXT, _TEXT, st.none() | _TEXT, st.none() | _TEXT, _OPT_INT,
                          _OPT_INT).map(lambda t: SocketInfo(*t)),
    _OPT_INT).map(lambda t: FdEntry(*t)), max_size=6))
def test_rows_json_writes_what_the_python_renderer_writes(rows):
    C = require_speedups()
    text = C.rows_json(rows, FD_KEYS, ",\n    ")
    assert text == ",\n    ".join(_fd_rows(rows, {}, {None: "null"}))
    assert [json.loads(r) for r in text.split(",\n    ")] if rows else text == ""


def test_rows_json_repeats_a_shared_tuple_as_the_python_renderer_writes_it(C):
    """rows_json copies the JSON of a tuple it wrote for the row before (one events tuple for
    thousands of registrations); across output buffer growth, and with other tuples between."""
    events, other = ("EPOLLIN", "EPOLLRDHUP"), ("EPOLLOUT",)
    regs = [Registration(fd, 1, events if fd % 7 else other, fd, fd, 9, "ok", (fd,), True)
            for fd in range(20000)]
    assert C.rows_json(regs, REG_KEYS, ",") == ",".join(_reg_rows(regs))
    flags = ("O_RDWR", "O_NONBLOCK")
    pair = SocketInfo("unix", "CONNECTED", None, None, None, None)  # one object, many rows
    rows = [FdEntry(fd, "socket", "socket:[1]", 1, flags if fd % 3 else None, 0,
                    pair if fd % 5 else SocketInfo("tcp", "LISTEN", "[::1]:80", None, 0, 9), 2050)
            for fd in range(5000)]
    assert C.rows_json(rows, FD_KEYS, ",\n") == ",\n".join(_fd_rows(rows, {}, {None: "null"}))


_LINK = (st.one_of(st.sampled_from(["socket:[", "pipe:[", "anon_inode:", "/", "net:[", ""]),
                   _TEXT)
         .flatmap(lambda p: st.tuples(st.just(p), st.one_of(
             st.integers(0, 10**21).map(str), _TEXT), st.sampled_from(["]", "", "]x"])))
         .map("".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | _LINK, max_size=8))
def test_link_kinds_agree_with_python(texts):
    C = require_speedups()
    assert C.link_kinds(texts) == PY.link_kinds(texts)


def test_link_kinds_sort_a_live_fd_table(C, tmp_path):
    """Every kind of a live table (the zoo) as classify() types it."""
    from fdscope.inspect.fds import classify

    with Target(ZOO, str(tmp_path)) as target:
        fds, links, _gone = gather.fd_links(Proc(), target.pid)
    kinds, inodes = C.link_kinds(links)
    assert (kinds, inodes) == PY.link_kinds(links)
    table = classify(fds, links, {})
    for kind, ino, typ, want in zip(kinds, inodes, table.types, table.inodes, strict=True):
        if kind in b"sp":
            assert (typ, ino) == ({ord("s"): "socket", ord("p"): "pipe"}[kind], want)
        else:
            assert typ not in ("socket", "pipe") and ino == 0
    assert set(kinds) >= set(b"sp/a")


def test_readahead_is_used_only_for_the_pid_it_read(C, monkeypatch):
    monkeypatch.setattr(readahead, "_pending", {})
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        pid = target.pid
        assert not readahead.start(["inspect", "--json", str(pid)])  # not `inspect PID`
        assert readahead.take(pid, Proc()) is None
        for digits in ("\u00b2", "\u0663", "\u2460", " 1"):  # only ASCII digits are a pid
            assert not readahead.start(["inspect", digits])
        assert readahead.start(["inspect", str(pid), "--json"])
        assert readahead.take(pid + 1, Proc()) is None
        assert readahead.take(pid, Proc("/nonexistent")) is None  # another proc root
        raw = readahead.take(pid, Proc())
        assert raw is not None and readahead.take(pid, Proc()) is None  # once
        again = gather.process(Proc(), pid)
        for name in ("pid", "fds", "links", "stats", "epoll", "fdinfo", "vanished"):
            assert getattr(raw, name) == getattr(again, name), name
        assert [t for t, _ in raw.net] == [t for t, _ in again.net]  # net timers tick
        assert {t for t, _ in raw.net} >= {"tcp", "unix"}
        # at most FLAGS_ALL_MAX fds: every fd's fdinfo is read ahead too
        assert len(raw.fds) <= gather.FLAGS_ALL_MAX
        assert set(raw.fdinfo) == set(raw.fds)
        assert all(t.startswith("pos:\t") for t in raw.fdinfo.values())
        assert list(raw.epoll) == [fd for fd, t in zip(raw.fds, raw.links, strict=True)
                                   if t == gather.EPOLL_LINK]


def test_report_gathers_itself_when_the_readahead_failed(C, monkeypatch):
    """The read-ahead raised (EACCES on /proc/PID/net, say): the report reads everything
    itself, and reports the same."""
    class Failed:
        def result(self):
            raise PermissionError("net")

    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        monkeypatch.setattr(readahead, "_pending", {"pid": target.pid, "root": Proc().root,
                                                    "job": Failed()})
        ahead = inspect_process(target.pid, sample=0)
        assert not readahead.pending(target.pid, Proc())
        alone = inspect_process(target.pid, sample=0)
    docs = [ahead.to_json(), alone.to_json()]
    for doc in docs:
        doc.pop("cpu")  # the lifetime average moves on
        doc.pop("listen_drops")  # the namespace's counters: other processes' connections
        for t in doc["threads"]:
            t.pop("wchan")  # the kernel reads a sleeping task's wchan as 0 now and then
    assert docs[0] == docs[1]
    assert ahead.summary.socket_states and ahead.summary.epoll_registrations > 1000
    assert not ahead.partial


def test_background_gives_the_value_or_raises_the_error():
    assert readahead.Background(sum, [1, 2]).result() == 3

    def fail():
        raise OSError("tables")

    with pytest.raises(OSError, match="tables"):
        readahead.Background(fail).result()


@pytest.mark.parametrize("script, extra", [(MANY, "3000"), (MANY, "5000"), (None, "")],
                         ids=["fdinfo-all", "links-only", "holes"])
def test_gather_reads_the_same_with_c_and_python_batches(C, monkeypatch, script, extra):
    """The first gather with the C batch reads (no GIL) and with their Python twins: the same
    links, holes (counted as vanished), stats, epoll fdinfo, fdinfo and net tables."""
    with Target(script or HOLES, *([extra] if extra else [])) as target:
        target.wait_sleeping()
        raw = gather.process(Proc(), target.pid)
        monkeypatch.setattr(speedups, "backend", PY)
        twin = gather.process(Proc(), target.pid)
    for name in ("fds", "links", "stats", "epoll", "fdinfo", "vanished"):
        assert getattr(raw, name) == getattr(twin, name), name
    assert [t for t, _ in raw.net] == [t for t, _ in twin.net]  # net timers tick
    assert len(raw.fds) >= 2900
    paths = {fd for fd, link in zip(raw.fds, raw.links, strict=True) if link.startswith("/")}
    if len(raw.fds) <= gather.FLAGS_ALL_MAX:
        assert set(raw.fdinfo) == set(raw.fds)
    else:  # above it, only epoll and path fds: the report reads what else it needs
        assert set(raw.fdinfo) == set(raw.epoll) | paths
    if script is None:
        assert not set(target.info["holes"]) & set(raw.fds)
        assert set(range(6000, 6020)) <= set(raw.fds)
    assert raw.epoll and all(t.startswith("pos:\t") and "tfd:" in t for t in raw.epoll.values())


def test_an_unreadable_fd_table_is_reported_not_read_ahead(C, monkeypatch):
    """EACCES on the fd table (another user's process): the read-ahead fails, and the report,
    reading for itself, raises AccessDenied (exit 4, tested through the entry point below)."""
    from fdscope.errors import AccessDenied

    class Refusing(Proc):
        def readlink_list(self, *parts, names, pid=None):  # readlinks() calls it too
            raise AccessDenied(self.path(*parts), "test")

    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        job = readahead.Background(gather.process, Refusing(), target.pid)
        monkeypatch.setattr(readahead, "_pending", {"pid": target.pid, "root": Proc().root,
                                                    "job": job})
        assert readahead.take(target.pid, Proc()) is None
        with pytest.raises(AccessDenied):
            inspect_process(target.pid, sample=0, proc=Refusing())


def _cli_docs_with_and_without_c(pid):
    """`python -m fdscope inspect PID --json` (the console entry point, with its read-ahead)
    with the C module and with FDSCOPE_NO_SPEEDUPS=1, without the cpu figures, which move on."""
    docs = []
    for extra in ({}, {"FDSCOPE_NO_SPEEDUPS": "1"}):
        out = subprocess.run([sys.executable, "-m", "fdscope", "inspect", str(pid), "--json",
                              "--sample", "0"], capture_output=True, text=True,
                             env={**os.environ, **extra}, check=True, timeout=60).stdout
        doc = json.loads(out)
        doc.pop("cpu", None)
        docs.append(doc)
    return docs


def test_cli_gives_the_same_document_with_and_without_the_accelerator(C):
    """End to end, as users run it: `python -m fdscope` (console entry point with the
    read-ahead) with the C module, and with FDSCOPE_NO_SPEEDUPS=1."""
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        docs = _cli_docs_with_and_without_c(target.pid)
    assert docs[0] == docs[1]
    assert docs[0]["summary"]["open_fds"] >= 2990
    assert docs[0]["summary"]["epoll_registrations"] > 1000


def test_entry_point_errors_keep_their_exit_codes(C):
    """The console entry point (read-ahead started, os._exit at the end) still turns errors into
    one line and the documented exit codes."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "fdscope", *args], capture_output=True,
                              text=True, timeout=60)

    gone = run("inspect", "4000000", "--json")  # above pid_max: never a process
    assert gone.returncode == 3 and gone.stderr.startswith("fdscope: ") and \
        gone.stderr.count("\n") == 1 and gone.stdout == ""
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        usage = run("inspect", str(target.pid), "--no-such-option")
        assert usage.returncode == 2 and "Traceback" not in usage.stderr
        code, err = run_as_nobody(["inspect", str(target.pid), "--json"], entry=True)
    assert code == 4, err
    assert err.startswith(f"fdscope: permission denied reading /proc/{target.pid}/")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_accelerator_is_built_where_ci_requires_it():
    """In CI (FDSCOPE_REQUIRE_SPEEDUPS=1) a missing or stale build fails here; elsewhere this
    reports it as a skip."""
    C = require_speedups()
    from fdscope.speedups import API

    assert C.API == API


# 5,000 dense fds with 20 closed below the count and 20 dup2()ed far above it (6000+): the
# read-ahead's 0..count-1 guess misses those, and the scan must list the table and still find
# every fd. Above FLAGS_ALL_MAX, so flags are read only where needed.
HOLES = """
import json, os, resource, select, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
ep = select.epoll()
keep = []
while len(os.listdir("/proc/self/fd")) < 5000:
    a, b = socket.socketpair(); keep += [a, b]
    ep.register(a.fileno(), select.EPOLLIN)
holes = list(range(1000, 1040, 2))
for n, fd in enumerate(holes):
    os.dup2(fd, 6000 + n)
    os.close(fd)
print(json.dumps({"holes": holes}), flush=True)
time.sleep(600)
"""


def test_cli_finds_every_fd_when_the_table_has_holes(C):
    with Target(HOLES) as target:
        target.wait_sleeping()
        listed = sorted(int(n) for n in os.listdir(f"/proc/{target.pid}/fd"))
        docs = _cli_docs_with_and_without_c(target.pid)
    assert docs[0] == docs[1]
    fds = [e["fd"] for e in docs[0]["fds"]]
    assert fds == listed
    assert not set(target.info["holes"]) & set(fds)
    assert set(range(6000, 6020)) <= set(fds)
    assert not any("closed or exited" in n for n in docs[0]["notes"])
    statuses = {r["status"] for s in docs[0]["epoll"] for r in s["registrations"]}
    assert "closed" in statuses  # the closed fds' sockets live on as fds 6000+ (dup2)


def test_epoll_rows_refuses_what_the_python_fast_path_refuses(C):
    line = "tfd:        5 events:       19 data:                5  pos:0 ino:2a sdev:9\n"
    good = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n" + line
    assert C.epoll_rows(good) == epoll_rows(good) == [(5, 0x19, 5, 0x2a, os.makedev(0, 9))]
    for bad in (good.replace("flags:\t02", "flags:\t09"),  # not octal
                good.replace("events:       19", "events:       1G"),
                good.replace("sdev:9", "sdev:9 extra"),
                good + "tfd: 7 garbled\n",
                good.replace("data:                5", "data: " + "f" * 17)):  # > 64 bits
        assert C.epoll_rows(bad) is None, bad
        if "f" * 17 not in bad:
            assert epoll_rows(bad) is None, bad


def test_epoll_rows_come_sorted_by_tfd_and_stably(C):
    """The kernel lists registrations by file pointer; both parsers give them by tfd, and a
    closed registration and a new one on the same number keep the kernel's order."""
    head = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n"
    lines = [(9, 1), (3, 2), (9, 3), (1, 4), (3, 5)]  # (tfd, data)
    text = head + "".join(f"tfd: {tfd:8d} events: {19:8x} data: {data:16x}  pos:0 ino:{data:x} "
                          f"sdev:9\n" for tfd, data in lines)
    rows = C.epoll_rows(text)
    assert rows == epoll_rows(text)
    assert [(r[0], r[2]) for r in rows] == [(1, 4), (3, 2), (3, 5), (9, 1), (9, 3)]
