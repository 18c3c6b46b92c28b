"""A minimal io_uring ring over raw syscalls (ctypes) and mmap'ed rings: no third-party binding.

Used by `fdscope probe io_uring` and `fdscope serve io_uring`. Layouts and constants are those
of include/uapi/linux/io_uring.h; the ring protocol is io_uring(7) and io_uring_setup(2):

- io_uring_setup(entries, params) returns a ring fd and fills `params` with the offsets of the
  head, tail, mask and array fields inside the SQ and CQ rings (struct io_sqring_offsets,
  struct io_cqring_offsets). The rings are mmap'ed from the ring fd at IORING_OFF_SQ_RING and
  IORING_OFF_CQ_RING (one mapping when IORING_FEAT_SINGLE_MMAP, since 5.4), the SQE array at
  IORING_OFF_SQES.
- The application writes an SQE, puts its index into the SQ array at tail & mask and advances
  the SQ tail; io_uring_enter(fd, to_submit, min_complete, IORING_ENTER_GETEVENTS) submits
  and waits. The kernel advances the SQ head as it consumes SQEs and the CQ tail as it posts
  CQEs; the application advances the CQ head once it has read them.

Memory ordering: the kernel publishes the CQ tail with smp_store_release and reads the SQ tail
with smp_load_acquire (io_uring/io_uring.c). Without SQPOLL the kernel reads the SQ only inside
io_uring_enter, and a syscall is a full barrier, so plain stores from Python are ordered before
it. CQEs are read after the CQ tail load; on x86 (TSO) loads are not reordered with loads, and
this module only reads CQEs after an io_uring_enter returned or after a tail that moved.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from typing import NamedTuple

from fdscope.parse.uring import OPCODES

# include/uapi/asm-generic/unistd.h (aarch64 and every newer arch) and
# arch/x86/entry/syscalls/syscall_64.tbl give io_uring the same numbers: 425, 426, 427.
SYSCALLS = {
    "x86_64": (425, 426, 427),
    "aarch64": (425, 426, 427),
}

IORING_SETUP_SQPOLL = 1 << 1
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_NODROP = 1 << 1
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_ENTER_GETEVENTS = 1 << 0
IORING_REGISTER_FILES = 2
IORING_SQ_CQ_OVERFLOW = 1 << 1

OP = {name: i for i, name in enumerate(OPCODES)}

# struct io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array, resv1
# (u32 each), user_addr (u64); struct io_cqring_offsets: head, tail, ring_mask, ring_entries,
# overflow, cqes, flags, resv1, user_addr. struct io_uring_params: sq_entries, cq_entries,
# flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3], sq_off, cq_off: 120 bytes.
_PARAMS = struct.Struct("=10I8IQ8IQ")
_SQE = struct.Struct("=BBHiQQIIQHHiQQ")  # struct io_uring_sqe, 64 bytes
_CQE = struct.Struct("=QiI")  # struct io_uring_cqe, 16 bytes
_U32 = struct.Struct("=I")
assert _PARAMS.size == 120 and _SQE.size == 64 and _CQE.size == 16


class Unavailable(OSError):
    """io_uring cannot be used here; str() says why (sysctl, seccomp, kernel, architecture)."""


class Cqe(NamedTuple):
    """One completion: the request's user_data, its result (negative errno on failure) and
    IORING_CQE_F_* flags."""

    user_data: int
    res: int
    flags: int


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
        # syscall(2) takes the number and up to 6 longs; fixed argtypes spare a conversion
        # object per argument on every call (this CDLL handle is fdscope.uring's own).
        _libc.syscall.argtypes = (ctypes.c_long,) * 7
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_long)
        _libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return _libc


def _syscall(nr: int, *args: int) -> int:
    ret = _lib().syscall(nr, *args, *_ZEROS[len(args):])
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


_ZEROS = (0,) * 6


def _numbers() -> tuple[int, int, int]:
    machine = os.uname().machine
    nrs = SYSCALLS.get(machine)
    if nrs is None:
        raise Unavailable(errno.ENOSYS, f"io_uring syscall numbers unknown for {machine}")
    return nrs


def why_unavailable(err: OSError) -> str:
    """The reason io_uring_setup failed, as an operator reads it."""
    disabled = _sysctl_disabled()
    if err.errno == errno.ENOSYS:
        return "io_uring_setup: ENOSYS: this kernel has no io_uring (before 5.1, or " \
               "CONFIG_IO_URING=n)"
    if err.errno == errno.EPERM:
        if disabled:
            return (f"io_uring_setup: EPERM: kernel.io_uring_disabled = {disabled} "
                    "(1: only members of kernel.io_uring_group, 2: nobody; "
                    "Documentation/admin-guide/sysctl/kernel.rst)")
        return "io_uring_setup: EPERM: refused (a seccomp filter or an LSM denies io_uring)"
    if err.errno == errno.ENOMEM:
        return "io_uring_setup: ENOMEM: the rings do not fit in RLIMIT_MEMLOCK (before 5.12)"
    return f"io_uring_setup: {errno.errorcode.get(err.errno or 0, err.errno)}: {err.strerror}"


def _sysctl_disabled() -> int:
    try:
        with open("/proc/sys/kernel/io_uring_disabled", encoding="ascii") as f:
            value = f.read().strip()
    except OSError:
        return 0
    return int(value) if value.isdigit() else 0


class Ring:
    """One io_uring instance: SQ/CQ rings and SQE array mapped, helpers to queue and reap."""

    def __init__(self, entries: int = 64, flags: int = 0, cq_entries: int = 0) -> None:
        self._setup_nr, self._enter_nr, self._register_nr = _numbers()
        params = bytearray(_PARAMS.size)
        if cq_entries:
            flags |= 1 << 3  # IORING_SETUP_CQSIZE
            struct.pack_into("=I", params, 4, cq_entries)
        struct.pack_into("=I", params, 8, flags)
        buf = (ctypes.c_char * len(params)).from_buffer(params)
        try:
            self.fd = _syscall(self._setup_nr, entries, ctypes.addressof(buf))
        except OSError as err:
            raise Unavailable(err.errno or 0, why_unavailable(err)) from err
        del buf
        self._maps: list[tuple[int, int]] = []
        self._views: list[memoryview] = []
        try:
            self._map(_PARAMS.unpack(params))
        except BaseException:
            self._unmap()
            os.close(self.fd)
            raise
        self._local_tail = self.sq_tail
        self._known_head = self.sq_head  # the SQ head as last read (it only moves forward)
        self.closed = False

    def _map(self, p: tuple[int, ...]) -> None:
        self.sq_entries, self.cq_entries, self.flags = p[0], p[1], p[2]
        self.features = p[5]
        (self._sq_head, self._sq_tail, self._sq_mask_off, _, self._sq_flags, self._sq_dropped,
         self._sq_array, _, _) = p[10:19]
        (self._cq_head, self._cq_tail, self._cq_mask_off, _, self._cq_overflow, self._cqes,
         _, _, _) = p[19:28]
        sq_size = self._sq_array + self.sq_entries * 4
        cq_size = self._cqes + self.cq_entries * _CQE.size
        if self.features & IORING_FEAT_SINGLE_MMAP:
            self.sq_ring = self.cq_ring = self._mmap(max(sq_size, cq_size), IORING_OFF_SQ_RING)
        else:
            self.sq_ring = self._mmap(sq_size, IORING_OFF_SQ_RING)
            self.cq_ring = self._mmap(cq_size, IORING_OFF_CQ_RING)
        self.sqes = self._mmap(self.sq_entries * _SQE.size, IORING_OFF_SQES)
        self.sq_mask = _U32.unpack_from(self.sq_ring, self._sq_mask_off)[0]
        self.cq_mask = _U32.unpack_from(self.cq_ring, self._cq_mask_off)[0]

    def _mmap(self, size: int, offset: int) -> memoryview:
        """mmap(2) through libc: Python's mmap.mmap dup()s the fd, which would show every ring
        several times in /proc/PID/fd. Returns a writable byte view of the mapping."""
        libc = _lib()
        addr = libc.mmap(None, ctypes.c_size_t(size), mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_SHARED | mmap.MAP_POPULATE, self.fd, ctypes.c_long(offset))
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of the io_uring rings: {os.strerror(err)}")
        self._maps.append((addr, size))
        view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
        self._views.append(view)
        return view

    # -- ring indices (as the kernel sees them) ------------------------------------------------
    @property
    def sq_head(self) -> int:
        return _U32.unpack_from(self.sq_ring, self._sq_head)[0]

    @property
    def sq_tail(self) -> int:
        return _U32.unpack_from(self.sq_ring, self._sq_tail)[0]

    @property
    def cq_head(self) -> int:
        return _U32.unpack_from(self.cq_ring, self._cq_head)[0]

    @property
    def cq_tail(self) -> int:
        return _U32.unpack_from(self.cq_ring, self._cq_tail)[0]

    @property
    def cq_overflow(self) -> int:
        return _U32.unpack_from(self.cq_ring, self._cq_overflow)[0]

    @property
    def sq_flags(self) -> int:
        return _U32.unpack_from(self.sq_ring, self._sq_flags)[0]

    @property
    def sq_space(self) -> int:
        """SQEs that can still be queued before the SQ ring is full."""
        return self.sq_entries - ((self._local_tail - self.sq_head) & 0xFFFFFFFF)

    @property
    def unsubmitted(self) -> int:
        """SQEs queued and published (or queued locally) that the kernel has not consumed."""
        return (self._local_tail - self.sq_head) & 0xFFFFFFFF

    # -- queueing --------------------------------------------------------------------------------
    def queue(self, opcode: int, fd: int = -1, *, addr: int = 0, length: int = 0, off: int = 0,
              op_flags: int = 0, user_data: int = 0, flags: int = 0, publish: bool = True
              ) -> None:
        """Write one SQE and (with `publish`) advance the SQ tail the kernel reads. Raises
        BlockingIOError when the SQ ring is full (submit first)."""
        tail = self._local_tail
        if (tail - self._known_head) & 0xFFFFFFFF >= self.sq_entries:
            # Full as last seen: read the head the kernel has advanced since.
            self._known_head = self.sq_head
            if (tail - self._known_head) & 0xFFFFFFFF >= self.sq_entries:
                raise BlockingIOError(errno.EAGAIN, "SQ ring full")
        index = tail & self.sq_mask
        _SQE.pack_into(self.sqes, index * _SQE.size, opcode, flags, 0, fd, off, addr, length,
                       op_flags, user_data, 0, 0, 0, 0, 0)
        _U32.pack_into(self.sq_ring, self._sq_array + 4 * index, index)
        self._local_tail = (tail + 1) & 0xFFFFFFFF
        if publish:
            self.publish()

    def publish(self) -> None:
        """Make locally queued SQEs visible: store the SQ tail."""
        _U32.pack_into(self.sq_ring, self._sq_tail, self._local_tail)

    def enter(self, to_submit: int, min_complete: int = 0, flags: int = 0) -> int:
        """io_uring_enter(2) once; returns SQEs consumed. EINTR is raised to the caller (a
        signal handler may need to run first)."""
        if min_complete:
            flags |= IORING_ENTER_GETEVENTS
        return _syscall(self._enter_nr, self.fd, to_submit, min_complete, flags, 0, 0)

    def submit(self, wait: int = 0) -> int:
        """Publish and submit every queued SQE; with `wait`, block until that many CQEs are
        ready (or a signal). Returns the SQEs the kernel consumed."""
        self.publish()
        return self.enter(self.unsubmitted, wait)

    def register_files(self, fds: list[int]) -> None:
        """IORING_REGISTER_FILES: a fixed-file table of len(fds) slots (-1: empty slot)."""
        arr = (ctypes.c_int32 * len(fds))(*fds)
        _syscall(self._register_nr, self.fd, IORING_REGISTER_FILES, ctypes.addressof(arr),
                 len(fds))

    # -- reaping ---------------------------------------------------------------------------------
    def ready(self) -> int:
        return (self.cq_tail - self.cq_head) & 0xFFFFFFFF

    def completions(self) -> list[Cqe]:
        """The posted CQEs, oldest first; the CQ head is advanced past them (the kernel may
        reuse their slots from then on)."""
        ring = self.cq_ring
        head, tail = self.cq_head, self.cq_tail
        n = (tail - head) & 0xFFFFFFFF
        if not n:
            return []
        mask, base, size = self.cq_mask, self._cqes, _CQE.size
        first = head & mask
        # The entries are contiguous up to the end of the array, then wrap to slot 0.
        upto = min(n, mask + 1 - first)
        out = list(map(Cqe._make, _CQE.iter_unpack(ring[base + first * size:
                                                          base + (first + upto) * size])))
        if upto < n:
            out += map(Cqe._make, _CQE.iter_unpack(ring[base:base + (n - upto) * size]))
        _U32.pack_into(ring, self._cq_head, tail)
        return out

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._unmap()
        os.close(self.fd)

    def _unmap(self) -> None:
        # The ctypes views would point at unmapped memory: drop them first, so a use after
        # close() is a Python error, not a crash.
        self.sq_ring = self.cq_ring = self.sqes = None  # type: ignore[assignment]
        for view in self._views:
            view.release()
        self._views.clear()
        libc = _lib()
        for addr, size in self._maps:
            libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
        self._maps.clear()

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Buffer:
    """A fixed user-space buffer the kernel reads or writes while an SQE is in flight (it must
    stay alive until the CQE arrives): a ctypes array, its address and a byte view of it."""

    __slots__ = ("mem", "addr", "size", "view")

    def __init__(self, size: int) -> None:
        self.mem = ctypes.create_string_buffer(max(1, size))
        self.addr = ctypes.addressof(self.mem)
        self.size = size
        self.view = memoryview(self.mem).cast("B")

    def read(self, n: int) -> bytes:
        return self.view[:n].tobytes()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.view[:len(data)] = data


def available() -> str | None:
    """None when a ring can be created here, else the reason it cannot."""
    try:
        with Ring(2):
            return None
    except Unavailable as err:
        return str(err.strerror)
