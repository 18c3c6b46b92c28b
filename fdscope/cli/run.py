"""`fdscope run [MODEL]`: the main job: start a reference server, load it, inspect it."""

from __future__ import annotations

import click

from fdscope.cli.options import CONNECTIONS, SEED, SIZE, out, seconds
from fdscope.servers import MODELS

HELP = """Start a reference server (MODEL, default epoll) as a child process, drive
verified load at it, inspect it mid-load (summary, io_model, epoll or threads,
findings), stop both and print the load result. Exit 1 if any byte was lost or
corrupted or the server did not exit cleanly.

\b
Examples:
  fdscope run                      # epoll, 20 connections, 3 s
  fdscope run select --connections 200
  fdscope run threads --duration 5 --json
"""


@click.command("run", help=HELP)
@click.argument("model", type=click.Choice(list(MODELS)), default="epoll", required=False,
                metavar="[MODEL]")
@click.option("--connections", "-c", type=CONNECTIONS, default=20, show_default=True,
              help="Concurrent client connections.")
@click.option("--duration", "-d", type=seconds(0.2), default=3.0, show_default=True,
              help="Seconds of load.")
@click.option("--size", "-s", type=SIZE, default="1-4096", show_default=True,
              help="Message size in bytes or MIN-MAX (k, m suffixes).")
@click.option("--seed", type=SEED, default=None, help="Seed for reproducible payloads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (fdscope.run/1).")
def command(model: str, connections: int, duration: float, size: tuple[int, int],
            seed: int | None, as_json: bool) -> int:
    from fdscope.servers.run import RunConfig, inspection_sections, run_job

    lo, hi = size
    doc = run_job(RunConfig(model=model, connections=connections, duration=duration,
                            size_min=lo, size_max=hi, seed=seed))
    if as_json:
        from fdscope.render.json import dumps

        out(dumps(doc))
    else:
        from fdscope.render.servers import render_run

        text = None
        if doc["inspection"] is not None:
            from fdscope.render.inspect import render_text

            text = render_text(doc["inspection"], sections=inspection_sections(doc["inspection"]))
        out(render_run(doc, text), nl=False)
    return 0 if doc["ok"] else 1
