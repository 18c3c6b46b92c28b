"""Parse the io_uring part of /proc/PID/fdinfo/FD (io_uring/fdinfo.c io_uring_show_fdinfo).

The set of lines differs by kernel version, so every field is optional:
- 5.6-5.15: SqThread, SqThreadCpu, UserFiles (+ one "%5u: name" line per file), UserBufs
  (+ "%5u: 0x%llx/%u"), Personalities (an id line, then tab-indented Uid/Gid/Groups/CapEff),
  PollList ("  op=%d, task_works=%d").
- 5.16 (commit 83f84356bc8f "add more uring info to fdinfo for debug"): SqHead, SqTail,
  CachedSqHead, CqHead, CqTail, CachedCqTail, SQE and CQE lists, CqOverflowList. Its first
  form printed the indices masked (head & mask); f75d118349be ("harder fdinfo sq/cq ring
  iterating") prints them raw, together with SqMask and CqMask: `form` says which was read.
- Later: "SQEs:\t%u" / "CQEs:\t%u" counts before each list, SqTotalTime and SqWorkTime (SQPOLL
  thread CPU time in microseconds, 6.13), "NAPI:\tenabled|disabled" and its tracking lines.

SQE lines: "%5u: opcode:%s, fd:%d, flags:%x, off:%llu, addr:0x%llx, rw_flags:0x%x,
buf_index:%d user_data:%llu" (", eN:0x%llx" appended for 128-byte SQEs); the first form printed
the opcode as a number. CQE lines: "%5u: user_data:%llu, res:%d, flag:%x" (", extra1:%llu,
extra2:%llu" for 32-byte CQEs). PollList prints opcodes as numbers (enum io_uring_op).

A pure function: text in, a frozen dataclass out. It never raises on bad text: a line it cannot
read is kept in `unknown`, as is any line it does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# enum io_uring_op (include/uapi/linux/io_uring.h), in order: the index is the opcode.
OPCODES = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
    "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE",
    "STATX", "READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL",
    "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT",
    "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR",
    "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
    "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND",
    "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED", "PIPE",
)
U32 = 1 << 32

# The fdinfo lines every file has (fs/proc/fd.c seq_show): parsed by fdscope.parse.fdinfo.
_COMMON = frozenset({"pos", "flags", "mnt_id", "ino"})
_UDEC = re.compile(r"[0-9]+", re.ASCII)
_DEC = re.compile(r"-?[0-9]+", re.ASCII)
_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]+)", re.ASCII)
_KV = re.compile(r"([A-Za-z][A-Za-z_ ]*):\t(.*)", re.ASCII | re.DOTALL)
_ENTRY = re.compile(r" *([0-9]+): (.*)", re.ASCII | re.DOTALL)
# "key:value" tokens of SQE/CQE lines, separated by ", " or " " (the SQE format has no comma
# before user_data).
_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):([^,\s]*)", re.ASCII)
_POLL = re.compile(r"  op=(-?[0-9]+), task_works=(-?[0-9]+)", re.ASCII)
_OVERFLOW = re.compile(r"  user_data=([0-9]+), res=(-?[0-9]+), flags=([0-9a-fA-F]+)", re.ASCII)
_BUF = re.compile(r"0x([0-9a-fA-F]+)/([0-9]+)", re.ASCII)

# Header keys -> (attribute, parser); the ring indices are u32, the times u64, the rest ints.
_SCALARS = {
    "SqMask": ("sq_mask", "hex"), "SqHead": ("sq_head", "u"), "SqTail": ("sq_tail", "u"),
    "CachedSqHead": ("cached_sq_head", "u"), "CqMask": ("cq_mask", "hex"),
    "CqHead": ("cq_head", "u"), "CqTail": ("cq_tail", "u"),
    "CachedCqTail": ("cached_cq_tail", "u"), "SQEs": ("sqes_count", "u"),
    "CQEs": ("cqes_count", "u"), "SqThread": ("sq_thread", "d"),
    "SqThreadCpu": ("sq_thread_cpu", "d"), "SqTotalTime": ("sq_total_time", "u"),
    "SqWorkTime": ("sq_work_time", "u"), "UserFiles": ("user_files", "u"),
    "UserBufs": ("user_bufs", "u"),
}
# Header lines that open a list of entries (the lines after them until the next header).
_LISTS = {"SQEs": "sqes", "CQEs": "cqes", "UserFiles": "files", "UserBufs": "bufs",
          "Personalities": "personalities", "PollList": "poll", "CqOverflowList": "overflow",
          "NAPI": "napi"}


def opcode_name(op: int) -> str:
    """IORING_OP_* name of an opcode number; "op N" for one this table does not know."""
    return OPCODES[op] if 0 <= op < len(OPCODES) else f"op {op}"


@dataclass(frozen=True)
class UringSqe:
    """One submission queue entry the kernel has not consumed yet (between SqHead and SqTail)."""

    index: int  # slot in the SQE array
    opcode: str  # IORING_OP_* name without the prefix (decoded when the kernel printed a number)
    fd: int | None
    flags: int | None
    off: int | None
    addr: int | None
    rw_flags: int | None
    buf_index: int | None
    user_data: int | None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UringCqe:
    """One completion posted to the CQ ring that the application has not consumed yet."""

    index: int  # slot in the CQ ring
    user_data: int | None
    res: int | None
    flags: int | None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UringPoll:
    """A request waiting in the kernel for its file to become ready (PollList)."""

    opcode: int
    task_works: int


@dataclass(frozen=True)
class UringOverflow:
    """A completion that did not fit in the CQ ring, kept on the overflow list."""

    user_data: int
    res: int
    flags: int


@dataclass(frozen=True)
class UringInfo:
    """The io_uring fields of one fdinfo text; None where the kernel did not print the line.

    `form` is "raw" when SqMask is present (indices as free-running u32 counters), "masked" when
    the indices are there without it (the first 5.16 form, head & mask) and None when the
    kernel printed no indices at all (before 5.16)."""

    form: str | None = None
    sq_mask: int | None = None
    sq_head: int | None = None
    sq_tail: int | None = None
    cached_sq_head: int | None = None
    cq_mask: int | None = None
    cq_head: int | None = None
    cq_tail: int | None = None
    cached_cq_tail: int | None = None
    sqes_count: int | None = None
    cqes_count: int | None = None
    sqes: tuple[UringSqe, ...] = ()
    cqes: tuple[UringCqe, ...] = ()
    sq_thread: int | None = None
    sq_thread_cpu: int | None = None
    sq_total_time: int | None = None
    sq_work_time: int | None = None
    user_files: int | None = None
    files: tuple[tuple[int, str], ...] = ()
    user_bufs: int | None = None
    bufs: tuple[tuple[int, int, int], ...] = ()
    personalities: tuple[int, ...] = ()
    poll_list: tuple[UringPoll, ...] | None = None
    cq_overflow_list: tuple[UringOverflow, ...] | None = None
    napi: str | None = None
    napi_fields: tuple[tuple[str, str], ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def sq_entries(self) -> int | None:
        return self.sq_mask + 1 if self.sq_mask is not None else None

    @property
    def cq_entries(self) -> int | None:
        return self.cq_mask + 1 if self.cq_mask is not None else None

    @property
    def sq_pending(self) -> int | None:
        """SQEs written by the application (SqTail) not yet consumed by the kernel (SqHead).
        The kernel's own count where printed; from raw indices modulo 2^32 otherwise; unknown
        from masked indices (a full ring and an empty one look alike)."""
        if self.sqes_count is not None:
            return self.sqes_count
        if self.form == "raw" and self.sq_head is not None and self.sq_tail is not None:
            return (self.sq_tail - self.sq_head) % U32
        return None

    @property
    def cq_pending(self) -> int | None:
        """CQEs posted by the kernel (CqTail) not yet consumed by the application (CqHead)."""
        if self.cqes_count is not None:
            return self.cqes_count
        if self.form == "raw" and self.cq_head is not None and self.cq_tail is not None:
            return (self.cq_tail - self.cq_head) % U32
        return None

    @property
    def sqpoll(self) -> bool:
        """A kernel thread polls this ring's SQ (IORING_SETUP_SQPOLL): SqThread is its pid."""
        return self.sq_thread is not None and self.sq_thread > 0


def _num(kind: str, text: str) -> int | None:
    text = text.strip()
    if kind == "hex":
        m = _HEX.fullmatch(text)
        return int(m.group(1), 16) if m else None
    m = (_UDEC if kind == "u" else _DEC).fullmatch(text)
    return int(text) if m else None


def _tokens(text: str) -> dict[str, str]:
    return {k: v for k, v in _TOKEN.findall(text)}


def _int(tokens: dict[str, str], key: str, kind: str) -> int | None:
    v = tokens.get(key)
    return None if v is None else _num(kind, v)


def _sqe(index: int, rest: str) -> UringSqe | None:
    tok = _tokens(rest)
    op = tok.get("opcode")
    if not op:
        return None
    if _DEC.fullmatch(op):
        op = opcode_name(int(op))  # the first 5.16 form printed the number
    known = ("opcode", "fd", "flags", "off", "addr", "rw_flags", "buf_index", "user_data")
    return UringSqe(index, op, _int(tok, "fd", "d"), _int(tok, "flags", "hex"),
                    _int(tok, "off", "u"), _int(tok, "addr", "hex"),
                    _int(tok, "rw_flags", "hex"), _int(tok, "buf_index", "d"),
                    _int(tok, "user_data", "u"),
                    tuple((k, v) for k, v in tok.items() if k not in known))


def _cqe(index: int, rest: str) -> UringCqe | None:
    tok = _tokens(rest)
    if "user_data" not in tok and "res" not in tok:
        return None
    known = ("user_data", "res", "flag", "flags")
    flags = _int(tok, "flag", "hex") if "flag" in tok else _int(tok, "flags", "hex")
    return UringCqe(index, _int(tok, "user_data", "u"), _int(tok, "res", "d"), flags,
                    tuple((k, v) for k, v in tok.items() if k not in known))


def parse_uring(text: str) -> UringInfo:
    """The io_uring fields of an fdinfo text (the whole file, common lines included)."""
    values: dict[str, object] = {}
    sqes: list[UringSqe] = []
    cqes: list[UringCqe] = []
    files: list[tuple[int, str]] = []
    bufs: list[tuple[int, int, int]] = []
    personalities: list[int] = []
    poll: list[UringPoll] | None = None
    overflow: list[UringOverflow] | None = None
    napi_fields: list[tuple[str, str]] = []
    unknown: list[str] = []
    section = ""
    for line in text.split("\n"):
        if not line:
            continue
        if section == "personalities" and line[:1] == "\t":
            continue  # Uid/Gid/Groups/CapEff of the personality above
        if section == "poll" and poll is not None:
            m = _POLL.fullmatch(line)
            if m:
                poll.append(UringPoll(int(m.group(1)), int(m.group(2))))
                continue
        if section == "overflow" and overflow is not None:
            m = _OVERFLOW.fullmatch(line)
            if m:
                overflow.append(UringOverflow(int(m.group(1)), int(m.group(2)),
                                              int(m.group(3), 16)))
                continue
        m = _ENTRY.fullmatch(line)
        if m and section in ("sqes", "cqes", "files", "bufs", "personalities"):
            index, rest = int(m.group(1)), m.group(2)
            if section == "sqes":
                entry = _sqe(index, rest)
                if entry is not None:
                    sqes.append(entry)
                    continue
            elif section == "cqes":
                centry = _cqe(index, rest)
                if centry is not None:
                    cqes.append(centry)
                    continue
            elif section == "files":
                files.append((index, rest))
                continue
            elif section == "bufs":
                b = _BUF.fullmatch(rest)
                if b:
                    bufs.append((index, int(b.group(1), 16), int(b.group(2))))
                    continue
            unknown.append(line)
            continue
        if section == "personalities" and _UDEC.fullmatch(line.lstrip(" ")):
            personalities.append(int(line))
            continue
        kv = _KV.fullmatch(line)
        if kv is None:
            if line.endswith(":") and line[:-1] in _LISTS:
                key = line[:-1]
                section = _LISTS[key]
                if key == "PollList":
                    poll = []
                elif key == "CqOverflowList":
                    overflow = []
                continue
            unknown.append(line)
            continue
        key, value = kv.group(1), kv.group(2)
        if key in _COMMON:
            continue
        if section == "napi" and key != "NAPI" and key not in _SCALARS and key not in _LISTS:
            napi_fields.append((key, value))
            continue
        if key == "NAPI":
            values["napi"] = value.strip()
            section = "napi"
            continue
        spec = _SCALARS.get(key)
        if spec is None:
            unknown.append(line)
            section = ""
            continue
        n = _num(spec[1], value)
        if n is None:
            unknown.append(line)
        else:
            values[spec[0]] = n
        section = _LISTS.get(key, "")
    if "sq_mask" in values:
        form: str | None = "raw"
    elif any(k in values for k in ("sq_head", "sq_tail", "cq_head", "cq_tail")):
        form = "masked"
    else:
        form = None
    return UringInfo(
        form=form, sqes=tuple(sqes), cqes=tuple(cqes), files=tuple(files), bufs=tuple(bufs),
        personalities=tuple(personalities),
        poll_list=tuple(poll) if poll is not None else None,
        cq_overflow_list=tuple(overflow) if overflow is not None else None,
        napi_fields=tuple(napi_fields), unknown=tuple(unknown),
        **values)  # type: ignore[arg-type]
