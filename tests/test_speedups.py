"""The C accelerator (csrc/fdscope_speedups.c) against its pure-Python twins: on live /proc text
of processes the tests start, on hypothesis-generated input, and end to end through the CLI
with its read-ahead (fdscope.readahead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import require_speedups
from hypothesis import given, settings
from hypothesis import strategies as st
from inspect_support import ZOO, Target, run_as_nobody
from test_inspect_speed import MANY

import fdscope.inspect as I
from fdscope import readahead
from fdscope.inspect import (
    FdEntry,
    Registration,
    SocketInfo,
    _epoll_fast,
    _net_rows,
    _socket_infos,
    _unix_fast,
)
from fdscope.parse.fdlink import ANON_LINKS, classify_fd
from fdscope.parse.net import parse_inet
from fdscope.proc import Proc
from fdscope.render.inspect import FD_KEYS, REG_KEYS, _fd_rows, _reg_rows


@pytest.fixture
def C():
    return require_speedups()


def _python_net_rows(monkeypatch, table, text, inodes):
    with monkeypatch.context() as m:
        m.setattr(I, "C", None)
        return _net_rows(table, text, inodes)


def _python_socket_infos(monkeypatch, table, text, inodes):
    with monkeypatch.context() as m:
        m.setattr(I, "C", None)
        return _socket_infos(table, text, inodes)


def test_keys_follow_the_namedtuple_fields():
    assert [k if isinstance(k, str) else k and k[0] for k in FD_KEYS] == \
        [f if f != "flags_raw" else None for f in FdEntry._fields]
    assert FD_KEYS[6][1] == SocketInfo._fields
    assert REG_KEYS == Registration._fields


def test_live_reads_and_parses_match_python(C, tmp_path, monkeypatch):
    with Target(ZOO, str(tmp_path)) as target:
        target.wait_sleeping()
        pid = target.pid
        names = sorted(os.listdir(f"/proc/{pid}/fd"), key=int) + ["999999"]
        dir_fd = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        try:
            texts, errors = C.readlinkat_many(dir_fd, names)
        finally:
            os.close(dir_fd)
        assert texts[:-1] == [os.readlink(f"/proc/{pid}/fd/{n}") for n in names[:-1]]
        assert texts[-1] is None and errors == [(len(names) - 1, 2)]  # ENOENT
        known = {"anon_inode:[eventfd]": ("eventfd", None)}
        types, inodes, sockets, others = C.split_links(texts[:-1], known)
        assert sockets == [i for i, t in enumerate(types) if t == "socket"]
        assert others == [i for i, t in enumerate(types) if t is None]
        assert "eventfd" in types  # the zoo holds one
        for link, typ, ino in zip(texts[:-1], types, inodes, strict=True):
            kind = link.split(":[")[0] if link.startswith(("socket:[", "pipe:[")) else None
            expected = known.get(link, (None, None))
            assert (typ, ino) == ((kind, int(link[len(kind) + 2:-1])) if kind else expected)
        # every known link is typed as classify_fd types it
        for link, typ in ANON_LINKS.items():
            assert classify_fd(link).type == typ

        proc = Proc()
        epfds = [int(n) for n, t in zip(names, texts, strict=False) if t == readahead.EPOLL_LINK]
        assert epfds
        for epfd in epfds:
            text = proc.read_text(pid, "fdinfo", epfd)
            assert C.epoll_rows(text) == _epoll_fast(text) and _epoll_fast(text)
        fdinfo, gone = proc.read_many(pid, "fdinfo", names=names[:-1])
        assert gone == 0 and fdinfo == {n: proc.read_text(pid, "fdinfo", n) for n in names[:-1]}
        for table, text in readahead.net_texts(proc, pid):  # timers tick: parse the same text
            assert text.split("\n", 1)[0] == proc.read_text(pid, "net", table).split("\n", 1)[0]
            if table in ("tcp", "tcp6", "udp", "udp6", "unix"):
                assert _net_rows(table, text, None) == \
                    _python_net_rows(monkeypatch, table, text, None)
            if table not in ("netlink", "packet"):
                infos = C.sockets(table, text, None, SocketInfo)
                assert infos == _python_socket_infos(monkeypatch, table, text, None)
                if table == "unix":  # unbound socketpair ends share one SocketInfo per state
                    unbound = [i for i in infos.values() if i.local is None]
                    assert unbound and len({id(i) for i in unbound}) == len(set(unbound))
                assert infos or table not in ("tcp", "unix")  # the zoo has both
                assert all(type(i) is SocketInfo for i in infos.values())
            else:
                assert C.sockets(table, text, None, SocketInfo) is None  # the Python parsers
        report = I.inspect_process(pid, sample=0)
    rows = report.listed_fds()
    assert C.rows_json(rows, FD_KEYS, ",\n") == ",\n".join(_fd_rows(rows, {}, {None: "null"}))
    regs = [r for s in report.epoll for r in s.registrations]
    assert C.rows_json(regs, REG_KEYS, ",") == ",".join(_reg_rows(regs))


def _maybe_damaged(draw, lines):
    """The table text of `lines`, half the time with a few random characters put in somewhere."""
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=5)) + text[at:]
    return text


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
    for _ in range(draw(st.integers(0, 6))):
        lines.append(f"tfd: {draw(_DEC):8d} events: {draw(_HEX):>8} data: {draw(_HEX):>16}  "
                     f"pos:{draw(st.integers(-5, 2**40))} ino:{draw(_HEX)} "
                     f"sdev:{draw(st.integers(0, 2**36)):x}")
    return _maybe_damaged(draw, lines)


@settings(max_examples=400, deadline=None)
@given(_epoll_text())
def test_epoll_rows_agree_with_python_wherever_c_answers(text):
    C = require_speedups()
    try:
        expected = _epoll_fast(text)
    except (OverflowError, ValueError):
        expected = "error"  # os.makedev on an sdev wider than 32 bits
    got = C.epoll_rows(text)
    if got is not None:
        assert got == expected


_ADDR4 = st.integers(0, 2**32 - 1).map(lambda n: f"{n:08X}")
_ADDR6 = st.integers(0, 2**128 - 1).map(lambda n: f"{n:032X}")


@st.composite
def _inet_text(draw):
    rows = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
            "timeout inode"]
    addr = draw(st.sampled_from([_ADDR4, _ADDR6]))
    for i in range(draw(st.integers(0, 5))):
        rows.append(
            f"{i:4d}: {draw(addr)}:{draw(st.integers(0, 65535)):04X} "
            f"{draw(st.sampled_from(['00000000', '0' * 32, draw(addr)]))}:"
            f"{draw(st.integers(0, 65535)):04X} {draw(st.integers(0, 15)):02X} "
            f"{draw(st.integers(0, 2**32 - 1)):08X}:{draw(st.integers(0, 2**32 - 1)):08X} "
            f"00:00000000 00000000 {draw(st.integers(0, 70000)):5d}        0 "
            f"{draw(st.integers(0, 2**40))} 1 0000000000000000 100 0 0 10 0")
    return _maybe_damaged(draw, rows)


@settings(max_examples=300, deadline=None)
@given(_inet_text(), st.sampled_from(["tcp", "udp6", "raw"]))
def test_inet_rows_agree_with_parse_inet_wherever_c_answers(text, table):
    C = require_speedups()
    if C.inet_rows(text, None) is None:
        return
    expected = [(r.inode, r.proto, r.state, r.local, r.remote, r.recv_q, r.send_q)
                for r in parse_inet(text, table)]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(I, "C", C)
        assert _net_rows(table, text, None) == expected


def _sockets_agree(C, table, text, inodes):
    """C.sockets, wherever it answers, gives what its twin (_net_rows -> SocketInfo) gives."""
    got = C.sockets(table, text, inodes, SocketInfo)
    if got is None:
        return
    with pytest.MonkeyPatch.context() as m:
        m.setattr(I, "C", None)
        assert got == _socket_infos(table, text, inodes)
    assert all(type(i) is SocketInfo for i in got.values())


@settings(max_examples=300, deadline=None)
@given(_inet_text(), st.sampled_from(["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]),
       st.booleans())
def test_sockets_of_inet_tables_agree_with_python_wherever_c_answers(text, table, filtered):
    C = require_speedups()
    inodes = _first_row_inode(text, 9, filtered)
    _sockets_agree(C, table, text, inodes)


@st.composite
def _unix_text(draw):
    rows = ["Num       RefCount Protocol Flags    Type St Inode Path"]
    for _ in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from(["", " /run/x.sock", " @abstract", " /tmp/a b"]))
        rows.append(f"{draw(st.integers(0, 2**64 - 1)):016x}: {draw(st.integers(0, 9)):08X} "
                    f"00000000 {draw(st.sampled_from([0, 0x10000, 0x10001])):08X} "
                    f"{draw(st.sampled_from([1, 2, 5])):04X} {draw(st.integers(0, 6)):02X} "
                    f"{draw(st.integers(0, 2**40)):5d}{path}")
    return _maybe_damaged(draw, rows)


@settings(max_examples=300, deadline=None)
@given(_unix_text(), st.booleans())
def test_unix_rows_agree_with_python_wherever_c_answers(text, filtered):
    C = require_speedups()
    inodes = _first_row_inode(text, 6, filtered)
    got = C.unix_rows(text, inodes)
    if got is not None:
        assert got == _unix_fast(text, inodes)
    _sockets_agree(C, "unix", text, inodes)


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
    pair = SocketInfo("unix", "CONNECTED", None, None, None, None)  # shared, as C.sockets does
    rows = [FdEntry(fd, "socket", "socket:[1]", 1, flags if fd % 3 else None, 0,
                    pair if fd % 5 else SocketInfo("tcp", "LISTEN", "[::1]:80", None, 0, 9), 2050)
            for fd in range(5000)]
    assert C.rows_json(rows, FD_KEYS, ",\n") == ",\n".join(_fd_rows(rows, {}, {None: "null"}))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([None, 1, 2, 3, 2**40]), max_size=30), st.data())
def test_socket_column_picks_what_its_python_twin_picks(inodes, data):
    C = require_speedups()
    at = data.draw(st.lists(st.integers(0, max(len(inodes) - 1, 0)), unique=True,
                            max_size=len(inodes)))
    sockets = {1: SocketInfo("unix", "CONNECTED", None, None, None, None),
               2**40: SocketInfo("tcp", "LISTEN", "127.0.0.1:80", None, 0, 9)}
    unknown = SocketInfo("unknown", "UNKNOWN", None, None, None, None)
    got = C.socket_column(len(inodes), at, inodes, sockets, unknown)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(I, "C", None)
        assert got == I._socket_column(len(inodes), at, inodes, sockets, unknown)
    with pytest.raises(IndexError):
        C.socket_column(len(inodes), [len(inodes)], inodes, sockets, unknown)


def test_readahead_is_used_only_for_the_pid_it_read(C, monkeypatch):
    monkeypatch.setattr(readahead, "_pending", {})
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        pid = target.pid
        readahead.start(["inspect", "--json", str(pid)])  # not `inspect PID`: nothing starts
        assert readahead.take(pid, Proc()) is None
        readahead.start(["inspect", str(pid), "--json"])
        assert readahead.take(pid + 1, Proc()) is None
        assert readahead.take_rest(pid, Proc()) is None  # the first stage comes first
        raw = readahead.take(pid, Proc())
        assert raw is not None and readahead.take(pid, Proc()) is None  # once
        assert readahead.take_rest(pid + 1, Proc()) is None
        rest = readahead.take_rest(pid, Proc())
        assert rest is not None and readahead.take_rest(pid, Proc()) is None  # once
        again, again_rest = readahead.read(Proc(), pid)
        assert raw == again
        assert rest._replace(net=[]) == again_rest._replace(net=[])  # net timers tick
        assert [t for t, _ in rest.net] == [t for t, _ in again_rest.net]
        assert raw.epfds == list(rest.epoll) == \
            [fd for fd, t in enumerate(raw.links) if t == readahead.EPOLL_LINK]
        assert {t for t, _ in rest.net} >= {"tcp", "unix"}
        # at most FLAGS_ALL_MAX fds: every fd's fdinfo is read ahead too
        assert raw.count <= readahead.FLAGS_ALL_MAX
        assert set(rest.fdinfo) == {fd for fd, t in enumerate(raw.links) if t is not None}
        assert all(t.startswith("pos:\t") for t in rest.fdinfo.values())


def test_scan_reads_the_tables_itself_when_the_second_stage_fails(C, monkeypatch):
    """The read-ahead gave the links but failed on the tables (EACCES on /proc/PID/net, say):
    the scan reads the net tables and the epoll fdinfo itself, and reports the same."""
    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        raw, _rest = readahead.read(Proc(), target.pid)

        class Half:
            def result(self, stage=0):
                if stage:
                    raise PermissionError("net")
                return raw

        monkeypatch.setattr(readahead, "_pending", {"pid": target.pid, "root": Proc().root,
                                                    "job": Half()})
        ahead = I.inspect_process(target.pid, sample=0)
        assert not readahead.pending(target.pid, Proc())
        alone = I.inspect_process(target.pid, sample=0)
    docs = [ahead.to_json(), alone.to_json()]
    for doc in docs:
        doc.pop("cpu")  # the lifetime average moves on
    assert docs[0] == docs[1]
    assert ahead.summary.socket_states and ahead.summary.epoll_registrations > 1000
    assert not ahead.partial


def test_background_stages_come_in_order_and_errors_after_them():
    def gen(fail):
        yield "links"
        if fail:
            raise OSError("tables")
        yield "tables"

    ok = readahead.Background(gen, False, staged=True)
    assert (ok.result(1), ok.result(0)) == ("tables", "links")
    with pytest.raises(LookupError):
        ok.result(2)
    bad = readahead.Background(gen, True, staged=True)
    assert bad.result(0) == "links"
    with pytest.raises(OSError, match="tables"):
        bad.result(1)
    assert readahead.Background(sum, [1, 2]).result() == 3


def _python_read(monkeypatch, pid):
    with monkeypatch.context() as m:
        m.setattr(readahead, "C", None)
        m.setattr("fdscope.proc.C", None)
        return readahead.read(Proc(), pid)


@pytest.mark.parametrize("script, extra", [(MANY, "3000"), (MANY, "5000"), (None, "")],
                         ids=["fdinfo-all", "links-only", "holes"])
def test_readahead_c_call_reads_what_its_python_twin_reads(C, monkeypatch, script, extra):
    """The read-ahead's stages with C.readahead (the links in one call, no GIL) against its
    Python twin (Proc's reads): the same links, holes (None, counted as gone), epoll fds and
    fdinfo, net tables and fdinfo."""
    with Target(script or HOLES, *([extra] if extra else [])) as target:
        target.wait_sleeping()
        raw, rest = readahead.read(Proc(), target.pid)
        twin, twin_rest = _python_read(monkeypatch, target.pid)
    assert raw == twin
    assert rest._replace(net=[]) == twin_rest._replace(net=[])  # net timers tick
    assert [t for t, _ in rest.net] == [t for t, _ in twin_rest.net]
    assert raw.count == len(raw.links) >= 2900
    assert bool(rest.fdinfo) == (raw.count <= readahead.FLAGS_ALL_MAX)
    if script is None:
        assert raw.gone == 20 and [raw.links[fd] for fd in target.info["holes"]] == [None] * 20
    assert rest.epoll and all(t.startswith("pos:\t") and "tfd:" in t for t in rest.epoll.values())


def test_readahead_gives_way_to_the_scan_when_a_read_is_refused(C):
    """EACCES on the fd table (another user's process): no read-ahead, so the scan reads for
    itself and reports it (exit 4, tested through the entry point below)."""
    class Refusing(Proc):
        def read_ahead(self, pid, count):
            (links, errors), epfds = super().read_ahead(pid, count)
            return (links, errors + [(0, 13)]), epfds

    with Target(MANY, "3000") as target:
        target.wait_sleeping()
        assert readahead.read(Proc(), target.pid) is not None
        assert readahead.read(Refusing(), target.pid) is None


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
    assert C.epoll_rows(good) == _epoll_fast(good) == [(5, 0x19, 5, 0x2a, os.makedev(0, 9))]
    for bad in (good.replace("flags:\t02", "flags:\t09"),  # not octal
                good.replace("events:       19", "events:       1G"),
                good.replace("sdev:9", "sdev:9 extra"),
                good + "tfd: 7 garbled\n",
                good.replace("data:                5", "data: " + "f" * 17)):  # > 64 bits
        assert C.epoll_rows(bad) is None, bad
        if "f" * 17 not in bad:
            assert _epoll_fast(bad) is None, bad


def test_epoll_rows_come_sorted_by_tfd_and_stably(C):
    """The kernel lists registrations by file pointer; both parsers give them by tfd, and a
    closed registration and a new one on the same number keep the kernel's order."""
    head = "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\n"
    lines = [(9, 1), (3, 2), (9, 3), (1, 4), (3, 5)]  # (tfd, data)
    text = head + "".join(f"tfd: {tfd:8d} events: {19:8x} data: {data:16x}  pos:0 ino:{data:x} "
                          f"sdev:9\n" for tfd, data in lines)
    rows = C.epoll_rows(text)
    assert rows == _epoll_fast(text)
    assert [(r[0], r[2]) for r in rows] == [(1, 4), (3, 2), (3, 5), (9, 1), (9, 3)]
