"""io_uring: completion-based. The server does not ask "is this fd ready?"; it hands the kernel
the operations themselves (accept, recv, send) as SQEs and waits in io_uring_enter for their
results (CQEs). One ring, one thread; a sleeping server sits in io_uring_enter with
min_complete=1, which is what `fdscope inspect` shows (io_uring(7), io_uring_enter(2)).

What differs from a readiness loop:
- A buffer handed to the kernel belongs to it until the CQE arrives: each client has its own
  receive buffer and send buffer, and a connection is closed only once no operation on it is
  in flight (an in-flight request holds a reference to the file, so close() alone would leave
  the recv pending: its socket would never be released). Pending operations are cancelled
  with IORING_OP_ASYNC_CANCEL, which completes them with -ECANCELED.
- Backpressure: no recv is submitted while the client's pending output is at the cap.
- Several ACCEPTs stay in flight (ACCEPT_DEPTH), so a burst of clients is accepted in one turn.
- Out of fds: IORING_OP_ACCEPT allocates the fd before it looks at the queue
  (io_uring/net.c io_accept), so -EMFILE comes back at once whether a client waits or not.
  The server sheds a waiting client with the spare-fd idiom and, when none was waiting,
  waits for a 100 ms IORING_OP_TIMEOUT (or a client leaving) before accepting again.
- user_data carries (connection id, operation), never the fd: a closed fd's number is reused
  while a CQE for the old connection may still be on its way.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from fdscope.errors import Unsupported
from fdscope.servers.core import (
    READ_CHUNK,
    BaseServer,
    Conn,
    error_kind,
    raise_deferred_stop,
    signals_deferred,
    transform,
)
from fdscope.uring import IORING_ENTER_GETEVENTS, OP, Buffer, Ring, Unavailable

ENTRIES = 256
CQ_ENTRIES = 4096
SEND_CHUNK = 256 * 1024
# Operation tags in the low byte of user_data; the connection id above them (0: the listener).
ACCEPT, RECV, SEND, CANCEL, TIMER = 1, 2, 3, 4, 5
_TAG_BITS = 8
ACCEPT_RETRY_S = 0.1
# ACCEPT SQEs kept in flight: each completes one connection, and a loop turn that handles
# hundreds of completions would otherwise accept only one client per turn (liburing's
# multishot accept, 5.19, is the other answer; this works on every io_uring kernel).
ACCEPT_DEPTH = 16


# One thread submits and reaps: completions run as task work only when it enters the kernel
# (IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN, 6.1), instead of interrupting it each time a
# socket becomes ready (io_uring_setup(2)). Older kernels refuse the flags with EINVAL.
TASKRUN_FLAGS = (1 << 12) | (1 << 13)


def _ring() -> Ring:
    try:
        return Ring(ENTRIES, flags=TASKRUN_FLAGS, cq_entries=CQ_ENTRIES)
    except Unavailable as err:
        if err.errno != errno.EINVAL:
            raise
    return Ring(ENTRIES, cq_entries=CQ_ENTRIES)


class UringConn(Conn):
    """A client and the operations in flight on it."""

    __slots__ = ("cid", "rbuf", "sbuf", "sending", "recving", "closing")

    def __init__(self, sock: socket.socket, peer: Any, stats: Any, cap: int, cid: int) -> None:
        super().__init__(sock, peer, stats, cap)
        self.cid = cid
        self.rbuf = Buffer(READ_CHUNK)
        self.sbuf: Buffer | None = None
        self.sending = 0  # bytes handed to the kernel in the send in flight (0: none)
        self.recving = False
        self.closing = False


class IoUringServer(BaseServer):
    model = "io_uring"
    # Sockets stay blocking: io_uring issues socket operations non-blocking itself and arms
    # an internal poll when they would block (io_uring/poll.c io_arm_poll_handler).
    blocking_sockets = True

    def __init__(self, cfg: Any, emit: Any) -> None:
        super().__init__(cfg, emit)
        self.conns: dict[int, UringConn] = {}
        self.ring: Ring | None = None
        self._next_cid = 1
        self._accepting = 0  # ACCEPT SQEs in flight
        self._accept_parked = False
        self._timer = Buffer(16)  # struct __kernel_timespec for IORING_OP_TIMEOUT

    def bind(self) -> tuple[str, int]:
        """The ring first: where io_uring is refused the server says why and never listens."""
        try:
            self.ring = _ring()
        except Unavailable as err:
            raise Unsupported(f"serve io_uring: {err.strerror}") from err
        try:
            return super().bind()
        except BaseException:
            self.ring.close()
            raise

    def listening_extra(self) -> dict[str, Any]:
        return {"ring_entries": ENTRIES}

    # -- submission --------------------------------------------------------------------------
    def _queue(self, opcode: int, fd: int, tag: int, cid: int, **kw: Any) -> None:
        ring = self.ring
        assert ring is not None
        try:
            ring.queue(opcode, fd, user_data=(cid << _TAG_BITS) | tag, publish=False, **kw)
        except BlockingIOError:
            ring.submit()  # SQ ring full: hand the queued SQEs over first
            ring.queue(opcode, fd, user_data=(cid << _TAG_BITS) | tag, publish=False, **kw)

    def _arm_accept(self) -> None:
        assert self.listener is not None
        while self._accepting < ACCEPT_DEPTH and not self._accept_parked:
            self._accepting += 1
            self._queue(OP["ACCEPT"], self.listener.fileno(), ACCEPT, 0)

    def _park_accept(self) -> None:
        """No fd to accept into: try again after ACCEPT_RETRY_S or when a client leaves."""
        if self._accept_parked:
            return
        self._accept_parked = True
        struct.pack_into("=qq", self._timer.view, 0, 0, int(ACCEPT_RETRY_S * 1e9))
        self._queue(OP["TIMEOUT"], -1, TIMER, 0, addr=self._timer.addr, length=1)

    def _arm_recv(self, conn: UringConn) -> None:
        if not conn.recving and not conn.closing and conn.wants_read:
            conn.recving = True
            self._queue(OP["RECV"], conn.fd, RECV, conn.cid, addr=conn.rbuf.addr,
                        length=READ_CHUNK)

    def _arm_send(self, conn: UringConn) -> None:
        if conn.sending or conn.closing or not conn.out:
            return
        n = min(len(conn.out), SEND_CHUNK)
        if conn.sbuf is None or conn.sbuf.size < n:
            conn.sbuf = Buffer(max(n, 65536))
        with memoryview(conn.out) as pending:  # released at once: conn.out must stay resizable
            conn.sbuf.write(pending[:n])
        conn.sending = n
        self._queue(OP["SEND"], conn.fd, SEND, conn.cid, addr=conn.sbuf.addr,
                    length=n, op_flags=socket.MSG_NOSIGNAL)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        ring = self.ring
        assert ring is not None
        self._arm_accept()
        while True:
            raise_deferred_stop()
            try:
                ring.submit(wait=1)
            except InterruptedError:
                continue  # the tick or a stop signal: its handler runs before the next turn
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EBUSY):
                    raise
                # The CQ ring and its overflow list are full: reap before submitting more.
            with signals_deferred():
                complete = self._complete
                for user_data, res, _flags in ring.completions():
                    complete(user_data >> _TAG_BITS, user_data & 0xFF, res)

    def _complete(self, cid: int, tag: int, res: int) -> None:
        if tag == ACCEPT:
            self._accepting -= 1
            self._on_accept(res)
            self._arm_accept()
            return
        if tag == TIMER:
            self._accept_parked = False
            self._arm_accept()
            return
        if tag == CANCEL:
            return
        conn = self.conns.get(cid)
        if conn is None:
            return
        if tag == RECV:
            conn.recving = False
            self._on_recv(conn, res)
        elif tag == SEND:
            sent, conn.sending = conn.sending, 0
            self._on_send(conn, res, sent)
        self._settle(conn)

    def _on_accept(self, res: int) -> None:
        if res >= 0:
            sock = socket.socket(fileno=res)
            try:
                peer = sock.getpeername()
            except OSError:
                peer = "?"
            if self.admit(sock, peer):
                conn = UringConn(sock, peer, self.stats, self.cfg.out_cap, self._next_cid)
                self._next_cid += 1
                self.conns[conn.cid] = conn
                self._arm_recv(conn)
            return
        err = -res
        if err in (errno.EMFILE, errno.ENFILE):
            assert self.listener is not None
            self.listener.setblocking(False)
            try:
                shed = self._shed_one(OSError(err, "out of file descriptors"))
            finally:
                self.listener.setblocking(True)
            if not shed:
                self._park_accept()
        elif err not in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR,
                         errno.EAGAIN, errno.ECANCELED):
            raise OSError(err, f"accept: {errno.errorcode.get(err, err)}")

    def _on_recv(self, conn: UringConn, res: int) -> None:
        if res < 0:
            if res != -errno.ECANCELED:
                self._close(conn, error_kind(OSError(-res, "")))
            return
        if res == 0:
            conn.eof = True
            if not conn.out and not conn.sending:
                self._close(conn, "eof")
            return
        stats = self.stats
        stats.bytes_in += res
        conn.out += transform(conn.rbuf.read(res))
        if len(conn.out) > stats.peak_pending:
            stats.peak_pending = len(conn.out)
        if not conn.wants_read:
            conn._pause()

    def _on_send(self, conn: UringConn, res: int, sent: int) -> None:
        if res < 0:
            if res != -errno.ECANCELED:
                self._close(conn, error_kind(OSError(-res, "")))
            return
        self.stats.bytes_out += res
        del conn.out[:res]
        if res < sent:
            # A short send on a stream socket: its send buffer filled up (io_uring/net.c).
            self.stats.partial_writes += 1
        if conn.eof and not conn.out:
            self._close(conn, "eof")

    def _settle(self, conn: UringConn) -> None:
        """Submit what the connection needs next, or finish closing it."""
        if conn.closing:
            if not conn.recving and not conn.sending:
                self._release(conn)
            return
        if conn.paused and conn.wants_read:
            conn.paused = False
        self._arm_send(conn)
        self._arm_recv(conn)

    def _close(self, conn: UringConn, reason: str) -> None:
        """Begin closing: cancel what is in flight; released once every CQE is in."""
        if conn.closing:
            return
        conn.closing = True
        conn.reason = reason
        for busy, tag in ((conn.recving, RECV), (bool(conn.sending), SEND)):
            if busy:
                self._queue(OP["ASYNC_CANCEL"], -1, CANCEL, conn.cid,
                            addr=(conn.cid << _TAG_BITS) | tag)

    def _release(self, conn: UringConn) -> None:
        del self.conns[conn.cid]
        conn.sock.close()
        self.stats.ended(conn.reason)
        if self._accept_parked:
            self._accept_parked = False  # an fd is free again; the timer's CQE is ignored
            self._arm_accept()

    def close_all(self) -> None:
        # Closing the ring cancels every request still in flight (io_uring/io_uring.c
        # io_ring_exit_work); the buffers stay referenced by the connections until then.
        # Completions already posted (a reply the client has received) are counted first; an
        # enter with GETEVENTS runs the task work that posts the finished ones.
        ring = self.ring
        if ring is not None and not ring.closed:
            try:
                ring.enter(0, 0, IORING_ENTER_GETEVENTS)
                for cqe in ring.completions():
                    self._complete(cqe.user_data >> _TAG_BITS, cqe.user_data & 0xFF, cqe.res)
            except OSError:
                pass
        for conn in list(self.conns.values()):
            conn.sock.close()
            self.stats.ended("shutdown")
        self.conns.clear()
        if self.ring is not None:
            self.ring.close()
        super().close_all()
