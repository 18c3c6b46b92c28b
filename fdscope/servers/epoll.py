"""epoll, level-triggered: the interest list lives in the kernel (epoll_ctl once per change),
epoll_wait returns only ready fds. A writable socket is reported on every wait while it is
registered for EPOLLOUT, so EPOLLOUT is asked for only while output is pending (epoll(7))."""

from __future__ import annotations

import select

from fdscope.servers.poll import PollServer


class EpollServer(PollServer):
    model = "epoll"
    _new = staticmethod(select.epoll)
    _READ = select.EPOLLIN
    _WRITE = select.EPOLLOUT
    _READISH = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP

    def close_all(self) -> None:
        super().close_all()
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.close()
