"""Reference echo servers, one per I/O model, over one shared core (fdscope.servers.core)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from fdscope.servers.core import BaseServer, ServeConfig, Stats

# model name -> (module, class); modules load on use.
MODELS: dict[str, tuple[str, str]] = {
    "blocking": ("fdscope.servers.blocking", "BlockingServer"),
    "threads": ("fdscope.servers.threads", "ThreadsServer"),
    "nonblocking": ("fdscope.servers.nonblocking", "NonblockingServer"),
    "select": ("fdscope.servers.select", "SelectServer"),
    "poll": ("fdscope.servers.poll", "PollServer"),
    "epoll": ("fdscope.servers.epoll", "EpollServer"),
    "epoll-et": ("fdscope.servers.epoll_et", "EpollETServer"),
    "selectors": ("fdscope.servers.selectors", "SelectorsServer"),
    "sigio": ("fdscope.servers.sigio", "SigioServer"),
    "asyncio": ("fdscope.servers.asyncio", "AsyncioServer"),
    "asyncio-uvloop": ("fdscope.servers.asyncio_uvloop", "AsyncioUvloopServer"),
    "io_uring": ("fdscope.servers.io_uring", "IoUringServer"),
}

Emit = Callable[[str, dict[str, Any]], None]


def server_class(model: str) -> type[BaseServer]:
    module, cls = MODELS[model]
    return getattr(importlib.import_module(module), cls)


def serve(cfg: ServeConfig, emit: Emit) -> Stats:
    """Bind, announce (`listening` event), serve until SIGINT/SIGTERM, announce `stopped`."""
    server = server_class(cfg.model)(cfg, emit)
    host, port = server.bind()
    return server.serve_forever(
        lambda: emit("listening", {"model": cfg.model, "host": host, "port": port,
                                   "pid": os.getpid(), **server.listening_extra()}),
        lambda stats: emit("stopped", {"model": cfg.model, **stats.to_json()}))
