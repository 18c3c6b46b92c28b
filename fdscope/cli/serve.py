"""`fdscope serve MODEL`: run one of the reference echo servers until SIGINT/SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from fdscope.cli.options import CONNECTIONS, PORT, AsciiInt, out, seconds
from fdscope.servers import MODELS

HELP = """Run a reference upper-case echo server using one I/O MODEL.

\b
Models: blocking, threads (--pool N), nonblocking (--idle-sleep S), select, poll,
epoll, epoll-et, selectors, sigio, asyncio, asyncio-uvloop (needs fdscope[uvloop]), io_uring.
See docs/serve.md in the source.

\b
Examples:
  fdscope serve epoll --port 9000
  fdscope serve threads --pool 8
  fdscope serve select --json          # first stdout line: {"event": "listening", ...}
"""


def _emitter(as_json: bool) -> Callable[[str, dict[str, Any]], None]:
    from fdscope.render.json import dumps_line
    from fdscope.render.servers import render_event

    def emit(event: str, fields: dict[str, Any]) -> None:
        line = dumps_line({"event": event, **fields}) if as_json else render_event(event, fields)
        out(line)
        sys.stdout.flush()

    return emit


@click.command("serve", help=HELP)
@click.argument("model", type=click.Choice(list(MODELS)), metavar="MODEL")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, show_default=True, type=PORT,
              help="Port to bind; 0 picks a free one (printed at startup).")
@click.option("--json", "as_json", is_flag=True, help="Print events as JSON lines.")
@click.option("--max-clients", type=CONNECTIONS, default=None,
              help="Refuse (close at once) clients beyond N concurrent ones.")
@click.option("--pool", type=AsciiInt(1, 10_000, metavar="N"), default=None,
              help="threads: a bounded pool of N worker threads instead of one per client.")
@click.option("--idle-sleep", type=seconds(0), default=0.0, show_default=True,
              help="nonblocking: seconds to sleep after a pass that found nothing to do.")
@click.option("--out-cap", type=AsciiInt(1, 2**30, metavar="BYTES"), default=None,
              help="Pending reply bytes per client above which it is not read (default 262144).")
def command(model: str, host: str, port: int, as_json: bool, max_clients: int | None,
            pool: int | None, idle_sleep: float, out_cap: int | None) -> None:
    from fdscope.errors import FdscopeError, UsageError
    from fdscope.servers import serve
    from fdscope.servers.core import OUT_CAP, ServeConfig

    if pool is not None and model != "threads":
        raise UsageError("--pool applies only to the threads model")
    if idle_sleep and model != "nonblocking":
        raise UsageError("--idle-sleep applies only to the nonblocking model")
    if not host.strip() or not host.isprintable():
        # bind("") would mean every interface: binding beyond loopback must be asked for by
        # name (0.0.0.0 or ::).
        raise UsageError(f"--host must name an address (0.0.0.0 for every interface), not {host!r}")
    cfg = ServeConfig(model=model, host=host, port=port, json=as_json, max_clients=max_clients,
                      pool=pool, idle_sleep=idle_sleep, out_cap=out_cap or OUT_CAP)
    try:
        serve(cfg, _emitter(as_json))
    except BrokenPipeError:
        raise  # stdout closed (`| head -1`): the CLI exits quietly; not a failure to serve
    except OSError as err:
        from fdscope.parse.net import format_inet

        raise FdscopeError(f"cannot serve on {format_inet(host, port)}: "
                           f"{err.strerror or err}") from err
