"""asyncio on uvloop, the peer a Python user would pick for speed: the same Protocol as the
`asyncio` model on uvloop's event loop (libuv's epoll loop and transports, written in C).
uvloop is the optional extra fdscope[uvloop]; without it the model refuses to start."""

from __future__ import annotations

import asyncio
from typing import Any

from fdscope.errors import Unsupported
from fdscope.servers.asyncio import AsyncioServer


class AsyncioUvloopServer(AsyncioServer):
    model = "asyncio-uvloop"

    def __init__(self, *args: Any, **kw: Any) -> None:
        try:
            import uvloop
        except ImportError:
            raise Unsupported("asyncio-uvloop needs uvloop, which is not installed "
                              "(pip install 'fdscope[uvloop]')") from None
        self._uvloop = uvloop
        super().__init__(*args, **kw)

    def listening_extra(self) -> dict[str, Any]:
        return {"loop": f"uvloop {self._uvloop.__version__}"}

    def new_loop(self) -> asyncio.AbstractEventLoop:
        return self._uvloop.new_event_loop()
