"""`fdscope load HOST:PORT`: drive an echo server and verify every reply byte."""

from __future__ import annotations

import sys

import click

from fdscope.cli.options import (
    CONNECTIONS,
    COUNT,
    SEED,
    SIZE,
    AsciiInt,
    ParsedType,
    out,
    seconds,
)

HELP = """Load an upper-case echo server at HOST:PORT and verify every reply byte.

N connections from one process (one epoll loop; --processes P spreads them over P) each
send M messages of random bytes
and random sizes, one at a time; each reply must equal the message upper-cased (ASCII),
byte for byte. Exit 1 on any lost or corrupted byte or connection error.

\b
Examples:
  fdscope load 127.0.0.1:9000
  fdscope load 127.0.0.1:9000 --connections 1000 --messages 20 --size 1-64k
  fdscope load 127.0.0.1:9000 --duration 5 --json
  fdscope load 127.0.0.1:9000 --connections 200 --processes 2    # a client on 2 cores
"""


def _parse_target(text: str) -> tuple[str, int]:
    from fdscope.load import parse_target

    return parse_target(text)


@click.command("load", help=HELP)
@click.argument("target", type=ParsedType("HOST:PORT", _parse_target))
@click.option("--connections", "-c", type=CONNECTIONS, default=10, show_default=True,
              help="Concurrent connections (the soft fd limit is raised as needed).")
@click.option("--messages", "-m", type=COUNT, default=100, show_default=True,
              help="Messages per connection (ignored with --duration).")
@click.option("--size", "-s", type=SIZE, default="1-4096", show_default=True,
              help="Message size in bytes, or a MIN-MAX range (k and m suffixes allowed).")
@click.option("--duration", "-d", type=seconds(0, min_open=True), default=None,
              help="Send for S seconds instead of a fixed number of messages.")
@click.option("--timeout", type=seconds(0, min_open=True), default=10.0,
              show_default=True, help="Give up when nothing moves for this many seconds.")
@click.option("--seed", type=SEED, default=None, help="Seed for reproducible payloads.")
@click.option("--processes", "-p", type=AsciiInt(1, 256), default=1, show_default=True,
              help="Spread the connections over P client processes (each its own epoll loop).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fdscope.load/1).")
def command(target: tuple[str, int], connections: int, messages: int, size: tuple[int, int],
            duration: float | None, timeout: float, seed: int | None, processes: int,
            as_json: bool) -> int:
    from fdscope.load import LoadConfig
    from fdscope.loadpool import run_load_processes
    from fdscope.render.servers import render_load

    host, port = target
    cfg = LoadConfig(host=host, port=port, connections=connections,
                     messages=None if duration else messages, size_min=size[0],
                     size_max=size[1], duration=duration, stall_timeout=timeout, seed=seed)
    if sys.stderr.isatty() and not duration:
        with click.progressbar(length=connections * messages, label="messages",
                               file=sys.stderr) as bar:
            doc = run_load_processes(cfg, processes, progress=bar.update)
    else:
        doc = run_load_processes(cfg, processes)
    if as_json:
        from fdscope.render.json import dumps

        out(dumps(doc))
    else:
        out(render_load(doc), nl=False)
    return 0 if doc["ok"] else 1
