"""Hypothesis fuzzing of every /proc parser.

Two kinds of property: (1) on arbitrary or mutated text, a parser returns or raises ParseError and
nothing else; (2) on text formatted exactly as the kernel formats it (same printf formats as the
kernel sources named below), parsing gives back the generated values."""

# ruff: noqa: UP031  (%-formats here are the kernel's seq_printf formats, kept verbatim)

import ipaddress
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fdscope.errors import ParseError
from fdscope.parse.events import decode_epoll_mask, decode_open_flags, is_disarmed
from fdscope.parse.fdinfo import (
    EpollTarget,
    _parse_epoll_tokens,
    kernel_dev_to_userspace,
    parse_epoll_line,
    parse_fdinfo,
)
from fdscope.parse.fdlink import FD_TYPES, classify_fd
from fdscope.parse.net import (
    TCP_STATES,
    UNIX_STATES,
    parse_inet,
    parse_netlink,
    parse_packet,
    parse_unix,
)
from fdscope.parse.status import parse_status
from fdscope.parse.syscall import decode_args, parse_syscall, syscall_name
from fdscope.parse.task import parse_cmdline, parse_stat

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
# Text that looks like /proc: mostly digits, hex, separators and the keys the parsers know.
PROC_ALPHABET = st.sampled_from(
    list("0123456789abcdefABCDEFx:-@ \t\n()/[]_.") + ["\x00", "é", "٣", "¹"]
)
PROC_WORDS = st.sampled_from(
    ["pos:", "flags:", "mnt_id:", "ino:", "tfd:", "events:", "data:", "sdev:", "0x", "running",
     "sl", "Num", "sk", "Name:", "Pid:", "Uid:", "Threads:", "State:", "Tgid:", "PPid:", ")", " ("]
)  # fmt: skip
proc_text = st.lists(st.one_of(PROC_ALPHABET, PROC_WORDS), max_size=80).map("".join)
any_text = st.one_of(st.text(max_size=300), proc_text)


def mutate(draw, text):
    """Insert, delete or replace a few characters of `text`."""
    chars = list(text)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["ins", "del", "rep"]))
        i = draw(st.integers(0, len(chars)))
        c = draw(st.one_of(PROC_ALPHABET, st.characters()))
        if op == "ins":
            chars.insert(i, c)
        elif chars and i < len(chars):
            chars[i] = c if op == "rep" else ""
    return "".join(chars)


def only_parse_error(fn, *args):
    try:
        return fn(*args)
    except ParseError:
        return None


# ---------------------------------------------------------------- fdinfo (fs/proc/fd.c, eventpoll.c)


@st.composite
def epoll_targets(draw):
    new_format = draw(st.booleans())
    return EpollTarget(
        tfd=draw(st.integers(0, 2**31 - 1)),
        events=draw(U32),
        data=draw(U64),
        pos=draw(st.integers(-(2**63), 2**63 - 1)) if new_format else None,
        ino=draw(U64) if new_format else None,
        sdev=draw(U32) if new_format else None,
    )


def format_epoll(t, upper):
    x = "X" if upper else "x"
    line = f"tfd: %8d events: %8{x} data: %16{x}" % (t.tfd, t.events, t.data)
    if t.pos is not None:
        line += f"  pos:%d ino:%{x} sdev:%{x}" % (t.pos, t.ino, t.sdev)
    return line


@st.composite
def fdinfo_docs(draw):
    pos = draw(st.integers(-(2**63), 2**63 - 1))
    flags = draw(st.integers(0, 2**32 - 1))
    mnt_id = draw(st.integers(0, 2**31 - 1))
    ino = draw(U64)
    targets = draw(st.lists(epoll_targets(), max_size=6))
    others = draw(
        st.lists(
            st.sampled_from(
                ["eventfd-count:                3", "clockid: 1", "settime flags: 00", "PollList:",
                 "inotify wd:1 ino:3f7e8 sdev:fe00000 mask:100", "fanotify flags:0 event-flags:8000",
                 "  user_data=1, res=0", "lock:\t1: POSIX  ADVISORY  READ 1 00:1a:2 0 EOF"]
            ),
            max_size=4,
        )
    )  # fmt: skip
    upper = draw(st.booleans())
    lines = [f"pos:\t{pos}", f"flags:\t0{flags:o}", f"mnt_id:\t{mnt_id}", f"ino:\t{ino}"]
    lines += [format_epoll(t, upper) for t in targets] + others
    return "\n".join(lines) + "\n", (pos, flags, mnt_id, ino, tuple(targets), others)


@FUZZ
@given(fdinfo_docs())
def test_fdinfo_round_trip(doc):
    text, (pos, flags, mnt_id, ino, targets, others) = doc
    info = parse_fdinfo(text)
    assert (info.pos, info.flags, info.mnt_id, info.ino) == (pos, flags, mnt_id, ino)
    assert info.epoll == targets
    assert len(info.fields) + len(info.unknown) == len(others)
    for t in info.epoll:
        decode_epoll_mask(t.events)
        is_disarmed(t.events)
        kernel_dev_to_userspace(t.sdev or 0)
    decode_open_flags(info.flags, "x86_64")
    decode_open_flags(info.flags, "aarch64")


@FUZZ
@given(epoll_targets(), st.booleans(), st.sampled_from([" ", "  ", "\t"]))
def test_epoll_fast_path_agrees_with_token_parser(target, upper, gap):
    line = format_epoll(target, upper).replace("  pos:", gap + "pos:")
    assert _parse_epoll_tokens(line) == target
    assert parse_epoll_line(line) == target


@FUZZ
@given(st.data())
def test_fdinfo_mutated_only_parse_error(data):
    text, _ = data.draw(fdinfo_docs())
    info = only_parse_error(parse_fdinfo, mutate(data.draw, text))
    if info is not None:
        assert isinstance(info.unknown, tuple) and isinstance(info.epoll, tuple)


@FUZZ
@given(any_text)
def test_fdinfo_random_text(text):
    only_parse_error(parse_fdinfo, text)
    only_parse_error(parse_fdinfo, "flags:\t02\n" + text)


@FUZZ
@given(st.text(max_size=80).filter(lambda s: "\n" not in s))
def test_unknown_fdinfo_line_is_kept_not_an_error(line):
    assume(line.strip() and not line.startswith(("pos:", "flags:", "mnt_id:", "ino:", "tfd:")))
    info = only_parse_error(parse_fdinfo, "pos:\t0\nflags:\t02\n" + line + "\n")
    if info is not None:  # a "pos:\t.." lookalike with odd spacing may still be a known key
        assert line in info.unknown or any(line.startswith(k) for k, _ in info.fields)


@FUZZ
@given(U64, st.integers(-(2**40), 2**40))
def test_event_and_flag_decoders_total(mask, flags):
    names = decode_epoll_mask(mask)
    assert len(names) == bin(mask & 0xFFFFFFFF).count("1")
    assert decode_open_flags(flags)[0] in ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE", "O_PATH")


@FUZZ
@given(st.integers(0, 4095), st.integers(0, 2**20 - 1))
def test_kernel_dev_round_trip(major, minor):
    dev = kernel_dev_to_userspace((major << 20) | minor)
    assert (os.major(dev), os.minor(dev)) == (major, minor)


# ------------------------------------------------------------------------------ fd links


@FUZZ
@given(st.one_of(st.text(max_size=60), proc_text), st.one_of(st.none(), st.integers(0, 0o177777)))
def test_classify_fd_total(link, mode):
    target = classify_fd(link, mode)
    assert target.type in FD_TYPES


@FUZZ
@given(st.sampled_from(["socket", "pipe"]), U64)
def test_classify_pseudo_round_trip(kind, inode):
    assert classify_fd(f"{kind}:[{inode}]") == classify_fd(f"{kind}:[{inode}]", 0o140777)
    assert classify_fd(f"{kind}:[{inode}]").inode == inode


# ----------------------------------------------------- /proc/net (tcp_ipv4.c, af_unix.c ...)

INET_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"


def kernel_hex_addr(packed, byteorder):
    """What the kernel prints for an address: each 32-bit word with %08X, read in host order."""
    return "".join(
        "%08X" % int.from_bytes(packed[i : i + 4], byteorder) for i in range(0, len(packed), 4)
    )


@st.composite
def inet_sockets(draw, v6):
    if v6:
        addr = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
        raddr = ipaddress.IPv6Address(draw(st.sampled_from([0, 1, (0xFFFF << 32) | 0x7F000001])))
    else:
        addr = ipaddress.IPv4Address(draw(U32))
        raddr = ipaddress.IPv4Address(draw(st.sampled_from([0, 0x7F000001, draw(U32)])))
    return {
        "local": (addr, draw(st.integers(0, 65535))),
        "remote": (raddr, draw(st.integers(0, 65535))),
        "st": draw(st.integers(1, 12)),
        "tx": draw(U32),
        "rx": draw(U32),
        "uid": draw(U32),
        "inode": draw(U64),
    }


def split_addr(text):
    """("127.0.0.1:80" | "[::1]:80") -> (ip_address, port), so any valid spelling compares equal."""
    host, _, port = text.rpartition(":")
    if host.startswith("["):
        assert host.endswith("]")
        host = host[1:-1]
    return ipaddress.ip_address(host), int(port)


@FUZZ
@given(
    st.sampled_from(["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]),
    st.sampled_from(["little", "big"]),
    st.data(),
)
def test_inet_round_trip(proto, byteorder, data):
    socks = data.draw(st.lists(inet_sockets(proto.endswith("6")), max_size=5))
    lines = [INET_HEADER]
    for i, s in enumerate(socks):
        lines.append(
            "%4d: %s:%04X %s:%04X %02X %08X:%08X 00:00000000 00000000 %5u        0 %d 2 ffff 20 4 30 10 -1"
            % (
                i,
                kernel_hex_addr(s["local"][0].packed, byteorder),
                s["local"][1],
                kernel_hex_addr(s["remote"][0].packed, byteorder),
                s["remote"][1],
                s["st"],
                s["tx"],
                s["rx"],
                s["uid"],
                s["inode"],
            )
        )
    parsed = parse_inet("\n".join(lines) + "\n", proto, byteorder=byteorder)
    assert len(parsed) == len(socks)
    for got, s in zip(parsed, socks, strict=True):
        assert got.inode == s["inode"] and got.uid == s["uid"] and got.recv_q == s["rx"]
        assert split_addr(got.local) == s["local"]
        raddr, rport = s["remote"]
        if raddr.is_unspecified and rport == 0:
            assert got.remote is None
        else:
            assert split_addr(got.remote) == (raddr, rport)
        if proto.startswith("tcp"):
            assert got.state == TCP_STATES[s["st"]]
            assert got.send_q == (None if s["st"] == 10 else s["tx"])
        else:
            assert got.state == ("UNCONN" if s["st"] == 7 else TCP_STATES[s["st"]])


@FUZZ
@given(st.sampled_from(["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]), st.data())
def test_inet_mutated_only_parse_error(proto, data):
    socks = data.draw(st.lists(inet_sockets(proto.endswith("6")), min_size=1, max_size=2))
    s = socks[0]
    line = "   0: %s:%04X %s:%04X %02X %08X:%08X 00:00000000 00000000 %5u 0 %d" % (
        kernel_hex_addr(s["local"][0].packed, "little"),
        s["local"][1],
        kernel_hex_addr(s["remote"][0].packed, "little"),
        s["remote"][1],
        s["st"],
        s["tx"],
        s["rx"],
        s["uid"],
        s["inode"],
    )
    only_parse_error(parse_inet, INET_HEADER + "\n" + mutate(data.draw, line), proto)


unix_paths = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_characters="\n\x00"), min_size=1, max_size=40).map(
        lambda p: "/" + p
    ),
    st.text(st.characters(blacklist_characters="\n"), max_size=40).map(
        lambda p: "@" + p.replace("\x00", "@")
    ),
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            U64,
            st.booleans(),
            st.sampled_from([1, 2, 5]),
            st.sampled_from(sorted(UNIX_STATES)),
            U64,
            unix_paths,
        ),
        max_size=6,
    )
)
def test_unix_round_trip(rows):
    lines = ["Num       RefCount Protocol Flags    Type St Inode Path"]
    for addr, listening, stype, state, inode, path in rows:
        line = "%016x: %08X %08X %08X %04X %02X %5d" % (
            addr,
            2,
            0,
            0x10000 if listening else 0,
            stype,
            state,
            inode,
        )
        lines.append(line + (" " + path if path is not None else ""))
    parsed = parse_unix("\n".join(lines) + "\n")
    assert len(parsed) == len(rows)
    for got, (_, listening, _, state, inode, path) in zip(parsed, rows, strict=True):
        assert got.inode == inode
        assert got.local == (path or None)
        assert got.state == ("LISTEN" if listening else UNIX_STATES[state])


@FUZZ
@given(any_text)
def test_net_random_text(text):
    for proto in ("tcp", "udp6", "raw"):
        only_parse_error(parse_inet, text, proto)
    only_parse_error(parse_unix, text)
    only_parse_error(parse_netlink, text)
    only_parse_error(parse_packet, text)


@FUZZ
@given(st.data())
def test_netlink_packet_mutated(data):
    nl = "sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode\n" + mutate(
        data.draw,
        "00000000a14a63bb 16  4242       00000001 768      0        0     2        0        1499",
    )
    pk = "sk RefCnt Type Proto Iface R Rmem User Inode\n" + mutate(
        data.draw, "00000000a14a63bb 3      3    0003   2     1 0      0      52345"
    )
    only_parse_error(parse_netlink, nl)
    only_parse_error(parse_packet, pk)


# --------------------------------------------------------------------- syscall (fs/proc/base.c)


@FUZZ
@given(st.integers(0, 1000), st.lists(U64, min_size=8, max_size=8))
def test_syscall_round_trip(nr, regs):
    text = "%d %s\n" % (nr, " ".join("0x%x" % r for r in regs))
    state = parse_syscall(text)
    assert (state.nr, state.args, state.sp, state.pc) == (nr, tuple(regs[:6]), regs[6], regs[7])
    for arch in ("x86_64", "aarch64"):
        name = syscall_name(nr, arch)
        decoded = decode_args(name, state.args)
        assert all(isinstance(v, int) for v in decoded.values())


@st.composite
def mutated(draw, base):
    return mutate(draw, base)


@FUZZ
@given(st.one_of(any_text, mutated("232 0x5 0x1 0x2 0x3 0x4 0x5 0x6 0x7"), mutated("-1 0x1 0x2")))
def test_syscall_random_text(text):
    only_parse_error(parse_syscall, text)


@FUZZ
@given(st.text(max_size=20), st.lists(U64, max_size=8))
def test_decode_args_total(name, args):
    decode_args(name, tuple(args))


# -------------------------------------------------------------- task (fs/proc/array.c)


@FUZZ
@given(
    st.integers(1, 2**22),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=16),
    st.sampled_from("RSDTtXZPI"),
    st.lists(st.integers(0, 2**63 - 1), min_size=20, max_size=20),
    st.integers(0, 30),
)
def test_stat_round_trip(pid, comm, state, numbers, extra):
    numbers = numbers + list(range(extra))  # kernels differ in how many fields follow
    text = "%d (%s) %s %s\n" % (pid, comm, state, " ".join(map(str, numbers)))
    stat = parse_stat(text)
    assert (stat.pid, stat.comm, stat.state, stat.ppid, stat.flags) == (
        pid,
        comm,
        state,
        numbers[0],
        numbers[5],
    )
    assert stat.num_threads == numbers[16] and stat.starttime == numbers[18]
    assert stat.rss_pages == (numbers[20] if len(numbers) > 20 else None)


@FUZZ
@given(any_text)
def test_task_random_text(text):
    only_parse_error(parse_stat, text)
    only_parse_error(parse_status, text)


@FUZZ
@given(st.data())
def test_status_mutated(data):
    base = "Name:\tweb\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\nUid:\t0\t0\t0\t0\nThreads:\t3\nKthread:\t0\n"
    only_parse_error(parse_status, mutate(data.draw, base))


@FUZZ
@given(st.lists(st.binary(max_size=20).filter(lambda b: b"\0" not in b), min_size=1, max_size=6))
def test_cmdline_round_trip(args):
    data = b"\0".join(args) + b"\0"
    expected = [os.fsdecode(a) for a in args]
    while expected and not expected[-1]:
        expected.pop()  # trailing empty arguments are indistinguishable from NUL padding
    assert parse_cmdline(data) == tuple(expected)


@FUZZ
@given(st.binary(max_size=200))
def test_cmdline_total(data):
    parse_cmdline(data)


# -- /proc/PID/mountinfo (fs/proc_namespace.c show_mountinfo) -----------------------------------

mount_words = st.sampled_from(["-", "proc", "rw", "hidepid=2", "hidepid=invisible", "gid=5",
                               "subset=pid", "/proc", "\\040", "0:21", "shared:1", ",", "="])
mountinfo_text = st.lists(st.one_of(mount_words, PROC_ALPHABET, st.just(" ")),
                          max_size=60).map("".join)


@FUZZ
@given(st.one_of(any_text, mountinfo_text))
def test_mountinfo_random_text(text):
    from fdscope.parse.mountinfo import mount_at, parse_mountinfo

    mounts = parse_mountinfo(text)  # never raises: malformed lines are skipped
    for m in mounts:
        assert m.hidepid is None or isinstance(m.hidepid, str)
        assert mount_at(mounts, m.mount_point) is not None


@FUZZ
@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters=" \n\\"),
               min_size=1, max_size=30),
       st.sampled_from(["0", "1", "2", "4", "off", "noaccess", "invisible", "ptraceable"]))
def test_mountinfo_round_trip(point, hidepid):
    from fdscope.parse.mountinfo import HIDEPID_NAMES, parse_mountinfo

    # seq_path_root escapes " \t\n\\" as octal (fs/proc_namespace.c, mangle()).
    escaped = "".join("\\%03o" % ord(c) if c in " \t\n\\" else c for c in "/" + point)
    line = "66 46 0:40 / %s rw,relatime - proc proc rw,hidepid=%s\n" % (escaped, hidepid)
    (mount,) = parse_mountinfo(line)
    assert mount.mount_point == "/" + point and mount.fstype == "proc"
    assert mount.hidepid == HIDEPID_NAMES.get(hidepid, hidepid)


@FUZZ
@given(st.lists(st.one_of(
    st.text(max_size=30),
    st.builds(lambda k, i: f"{k}:[{i}]", st.sampled_from(["socket", "pipe", "anon_inode"]),
              st.one_of(st.text(max_size=8), st.integers(-5, 2**64 + 5).map(str))),
    st.sampled_from(["socket:[a00]", "socket:[٣]", "pipe:[]", "socket:[0x10]", "socket:[ 1]",
                     "anon_inode:[eventpoll]", "anon_inode:[eventfd]", "/dev/null"])),
    max_size=20))
def test_inspect_table_agrees_with_the_reference_classifier(links):
    """fdscope.inspect.fds.classify (the table path, also --watch's) types and inodes every
    link as fdscope.parse.fdlink.classify_fd does; bad inodes (`socket:[a00]`, unicode digits)
    are `unknown`, never a crash or a guessed number."""
    from fdscope.inspect import fds as inspect_fds

    paths = {}  # no stat: path fds keep the type the link alone gives
    table = inspect_fds.classify(list(range(len(links))), links, paths)
    for link, typ, ino in zip(links, table.types, table.inodes, strict=True):
        ref = classify_fd(link)
        assert (typ, ino) == (ref.type, ref.inode), link


# ---------------------------------------------------------------- io_uring fdinfo (io_uring/fdinfo.c)

S32 = st.integers(-(2**31), 2**31 - 1)
# Opcode names as io_uring_get_opcode prints them (uppercase, underscores).
OPCODE_NAMES = st.sampled_from(["NOP", "READ", "WRITE", "ACCEPT", "RECV", "SEND", "READ_FIXED",
                                "URING_CMD", "INVALID"])


@st.composite
def uring_docs(draw):
    """An io_uring fdinfo text formatted with io_uring_show_fdinfo's seq_printf formats, and the
    values that went in."""
    shift = draw(st.integers(0, 12))
    sq_mask, cq_mask = (1 << shift) - 1, (1 << (shift + 1)) - 1
    sq_head, sq_tail, cq_head, cq_tail = (draw(U32) for _ in range(4))
    sqes = draw(st.lists(st.tuples(st.integers(0, sq_mask), OPCODE_NAMES, S32, st.integers(0, 255),
                                   U64, U64, U32, st.integers(-(2**15), 2**16 - 1), U64),
                         max_size=4))
    cqes = draw(st.lists(st.tuples(st.integers(0, cq_mask), U64, S32, U32), max_size=4))
    files = draw(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n"),
                                  min_size=1, max_size=20), max_size=3))
    bufs = draw(st.lists(st.tuples(U64, U32), max_size=3))
    polls = draw(st.lists(st.tuples(st.integers(0, 70), st.integers(0, 1)), max_size=3))
    over = draw(st.lists(st.tuples(U64, S32, U32), max_size=3))
    sq_thread, sq_cpu = draw(S32), draw(S32)
    times = (draw(U64), draw(U64))
    lines = ["pos:\t0", "flags:\t02000002", "mnt_id:\t17", "ino:\t47786",
             "SqMask:\t0x%x" % sq_mask, "SqHead:\t%u" % sq_head, "SqTail:\t%u" % sq_tail,
             "CachedSqHead:\t%u" % sq_head, "CqMask:\t0x%x" % cq_mask, "CqHead:\t%u" % cq_head,
             "CqTail:\t%u" % cq_tail, "CachedCqTail:\t%u" % cq_tail,
             "SQEs:\t%u" % ((sq_tail - sq_head) % 2**32)]
    for idx, op, fd, fl, off, addr, rw, bi, ud in sqes:
        lines.append("%5u: opcode:%s, fd:%d, flags:%x, off:%u, addr:0x%x, rw_flags:0x%x, "
                     "buf_index:%d user_data:%u" % (idx, op, fd, fl, off, addr, rw, bi, ud))
    lines.append("CQEs:\t%u" % ((cq_tail - cq_head) % 2**32))
    for idx, ud, res, fl in cqes:
        lines.append("%5u: user_data:%u, res:%d, flag:%x" % (idx, ud, res, fl))
    lines += ["SqThread:\t%d" % sq_thread, "SqThreadCpu:\t%d" % sq_cpu,
              "SqTotalTime:\t%u" % times[0], "SqWorkTime:\t%u" % times[1],
              "UserFiles:\t%u" % len(files)]
    lines += ["%5u: %s" % (i, name) for i, name in enumerate(files)]
    lines.append("UserBufs:\t%u" % len(bufs))
    lines += ["%5u: 0x%x/%u" % (i, a, n) for i, (a, n) in enumerate(bufs)]
    lines.append("PollList:")
    lines += ["  op=%d, task_works=%d" % p for p in polls]
    lines.append("CqOverflowList:")
    lines += ["  user_data=%u, res=%d, flags=%x" % o for o in over]
    lines.append("NAPI:\tdisabled")
    values = dict(masks=(sq_mask, cq_mask), idx=(sq_head, sq_tail, cq_head, cq_tail), sqes=sqes,
                  cqes=cqes, files=files, bufs=bufs, polls=polls, over=over,
                  sq=(sq_thread, sq_cpu), times=times)
    return "\n".join(lines) + "\n", values


@FUZZ
@given(uring_docs())
def test_uring_round_trip(doc):
    from fdscope.parse.uring import parse_uring

    text, v = doc
    u = parse_uring(text)
    assert u.form == "raw" and (u.sq_mask, u.cq_mask) == v["masks"]
    assert (u.sq_head, u.sq_tail, u.cq_head, u.cq_tail) == v["idx"]
    assert u.sq_pending == (v["idx"][1] - v["idx"][0]) % 2**32
    assert u.cq_pending == (v["idx"][3] - v["idx"][2]) % 2**32
    assert [(e.index, e.opcode, e.fd, e.flags, e.off, e.addr, e.rw_flags, e.buf_index,
             e.user_data) for e in u.sqes] == list(v["sqes"])
    assert [(e.index, e.user_data, e.res, e.flags) for e in u.cqes] == list(v["cqes"])
    assert [name for _, name in u.files] == v["files"]
    assert [(a, n) for _, a, n in u.bufs] == v["bufs"]
    assert [(p.opcode, p.task_works) for p in u.poll_list or ()] == v["polls"]
    assert [(o.user_data, o.res, o.flags) for o in u.cq_overflow_list or ()] == v["over"]
    assert (u.sq_thread, u.sq_thread_cpu) == v["sq"]
    assert (u.sq_total_time, u.sq_work_time) == v["times"]
    assert u.napi == "disabled" and u.unknown == ()


@FUZZ
@given(st.data())
def test_uring_mutated_or_random_never_raises(data):
    from fdscope.parse.uring import parse_uring

    text, _ = data.draw(uring_docs())
    for sample in (mutate(data.draw, text), data.draw(any_text)):
        u = parse_uring(sample)
        # Whatever came in: the counts it reports are never negative, the form one of three.
        assert u.form in (None, "raw", "masked")
        for n in (u.sq_pending, u.cq_pending):
            assert n is None or n >= 0
